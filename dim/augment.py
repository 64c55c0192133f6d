"""Batched data augmentation on image tensors already on the training device.

No per-image Python loops and no PIL: every random choice is drawn for the
whole batch at once from torch's global RNG (so ``--resume`` reproduces it).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

AUGMENTATIONS = ("none", "flip-crop", "flip-crop-jitter", "resized-crop-jitter-grey")


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


def random_resized_crop(images: Tensor, scale: tuple[float, float] = (0.2, 1.0), ratio: float = 4 / 3) -> Tensor:
    """Crop a random box of each image and resize it back to the full size (bilinear).

    The box covers a fraction of the area drawn uniformly from ``scale``, with an
    aspect ratio drawn log-uniformly from ``[1 / ratio, ratio]``, at a uniformly
    random place inside the image (Szegedy et al. 2015; SimCLR's main
    augmentation). All boxes are sampled by one ``grid_sample`` call.
    ``(B, C, H, W)`` -> same.
    """
    batch, device = images.shape[0], images.device
    area = torch.empty(batch, device=device).uniform_(*scale)
    log_ratio = torch.empty(batch, device=device).uniform_(-math.log(ratio), math.log(ratio))
    width = (area * log_ratio.exp()).sqrt().clamp(max=1.0)  # fractions of the image side
    height = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
    centre_x = (torch.rand(batch, device=device) * 2 - 1) * (1 - width)  # in [-1, 1] coordinates
    centre_y = (torch.rand(batch, device=device) * 2 - 1) * (1 - height)
    theta = torch.zeros(batch, 2, 3, device=device, dtype=images.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = width, centre_x
    theta[:, 1, 1], theta[:, 1, 2] = height, centre_y
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def random_grayscale(images: Tensor, probability: float = 0.2) -> Tensor:
    """Replace each RGB image by its grey (channel mean) with the given probability. ``(B, C, H, W)`` -> same."""
    if images.shape[1] != 3:
        return images
    grey = torch.rand(images.shape[0], 1, 1, 1, device=images.device) < probability
    return torch.where(grey, images.mean(dim=1, keepdim=True).expand_as(images), images)


def augment(images: Tensor, mode: str) -> Tensor:
    """Apply an augmentation pipeline by name, one of :data:`AUGMENTATIONS`.

    * ``flip-crop``: :func:`random_flip`, then :func:`random_crop` (4-pixel shifts);
    * ``flip-crop-jitter``: then :func:`color_jitter`;
    * ``resized-crop-jitter-grey``: :func:`random_resized_crop` (20-100 % of the area),
      :func:`random_flip`, :func:`color_jitter` on 80 % of the images and
      :func:`random_grayscale` on 20 %: the strong augmentation of SimCLR
      (Chen et al. 2020) and AMDIM (Bachman et al. 2019), for two views.

    ``(B, C, H, W)`` float images in [-1, 1] -> same shape.
    """
    if mode not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {mode!r}; choose one of {', '.join(AUGMENTATIONS)}")
    if mode == "none":
        return images
    if mode == "resized-crop-jitter-grey":
        images = random_flip(random_resized_crop(images))
        jittered = torch.rand(images.shape[0], 1, 1, 1, device=images.device) < 0.8
        return random_grayscale(torch.where(jittered, color_jitter(images), images))
    images = random_crop(random_flip(images))
    if mode == "flip-crop-jitter":
        images = color_jitter(images)
    return images
