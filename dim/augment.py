"""Batched data augmentation on image tensors already on the training device.

No per-image Python loops and no PIL: every random choice is drawn for the
whole batch at once from torch's global RNG (so ``--resume`` reproduces it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

AUGMENTATIONS = ("none", "flip-crop", "flip-crop-jitter")


def random_flip(images: Tensor) -> Tensor:
    """Mirror each image left-right with probability 1/2. ``(B, C, H, W)`` -> same."""
    flip = torch.rand(images.shape[0], 1, 1, 1, device=images.device) < 0.5
    return torch.where(flip, images.flip(-1), images)


def random_crop(images: Tensor, padding: int = 4) -> Tensor:
    """Pad by reflection and crop back to the original size at a random offset per image.

    ``(B, C, H, W)`` -> ``(B, C, H, W)``; the crops are gathered with one
    advanced-indexing operation.
    """
    batch, _, height, width = images.shape
    padded = F.pad(images, (padding,) * 4, mode="reflect")  # (B, C, H + 2p, W + 2p)
    top = torch.randint(0, 2 * padding + 1, (batch, 1), device=images.device)
    left = torch.randint(0, 2 * padding + 1, (batch, 1), device=images.device)
    rows = top + torch.arange(height, device=images.device)  # (B, H)
    cols = left + torch.arange(width, device=images.device)  # (B, W)
    index = torch.arange(batch, device=images.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def color_jitter(images: Tensor, strength: float = 0.4) -> Tensor:
    """Random brightness, contrast and (for RGB) saturation per image, images in [-1, 1].

    Each factor is drawn uniformly from ``[1 - strength, 1 + strength]``.
    ``(B, C, H, W)`` -> same.
    """
    batch, channels = images.shape[:2]

    def factor() -> Tensor:
        return 1.0 + strength * (2.0 * torch.rand(batch, 1, 1, 1, device=images.device) - 1.0)

    images = (images + 1.0) * factor() - 1.0  # brightness: scale intensities in [0, 2]
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = (images - mean) * factor() + mean  # contrast
    if channels == 3:
        grey = images.mean(dim=1, keepdim=True)
        images = (images - grey) * factor() + grey  # saturation
    return images.clamp(-1.0, 1.0)


def augment(images: Tensor, mode: str) -> Tensor:
    """Apply an augmentation pipeline by name: ``none``, ``flip-crop`` or ``flip-crop-jitter``.

    ``(B, C, H, W)`` float images in [-1, 1] -> same shape.
    """
    if mode not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {mode!r}; choose one of {', '.join(AUGMENTATIONS)}")
    if mode == "none":
        return images
    images = random_crop(random_flip(images))
    if mode == "flip-crop-jitter":
        images = color_jitter(images)
    return images
