"""Image preprocessing shared by training data, embedding and search, so all three agree."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def image_to_uint8(image: Image.Image, image_size: int, channels: int) -> Tensor:
    """Convert a PIL image to the model's input grid as uint8.

    Converts to grey (``channels=1``) or RGB (``channels=3``), resizes so the
    shorter side is ``image_size`` (bicubic, antialiased) and centre-crops to a
    square. Images already at the target size are only converted.

    Returns:
        ``(channels, image_size, image_size)`` uint8 tensor.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    image = image.convert("L" if channels == 1 else "RGB")
    width, height = image.size
    if (width, height) != (image_size, image_size):
        scale = image_size / min(width, height)
        new_size = (max(image_size, round(width * scale)), max(image_size, round(height * scale)))
        image = image.resize(new_size, Image.Resampling.BICUBIC)
        left = (new_size[0] - image_size) // 2
        top = (new_size[1] - image_size) // 2
        image = image.crop((left, top, left + image_size, top + image_size))
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1)  # (C, H, W)


def normalize_images(images: Tensor) -> Tensor:
    """uint8 images in [0, 255] -> float32 in [-1, 1] (any leading shape, same device)."""
    if images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {images.dtype}")
    return images.float().div_(127.5).sub_(1.0)
