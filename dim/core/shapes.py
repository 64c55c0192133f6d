"""``shapes``: small generated scenes of coloured circles, squares or triangles, labelled by the shape.

Images that need no files and no network and are fully determined by a seed,
for tests, examples and a quick check that a model learns;
:func:`dim.core.datasets.load_dataset` serves them as the named dataset ``shapes``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle")  # label -> class name
_BLOCK_VALUES = 1 << 20  # float32 values per block of the noise and rounding pass (4 MiB)


def make_shapes(
    num_images: int, image_size: int = 32, seed: int = 0, grid: int = 3, fill: float = 0.85
) -> tuple[Tensor, Tensor]:
    """Generate small scenes of coloured circles, squares or triangles.

    Each image is a ``grid x grid`` layout of cells on one dark background; each
    cell holds, with probability ``fill``, one shape of the image's class, with
    its own random position in the cell, size and bright colour. The class is
    the one factor that every part of an image shares, while colour, position
    and size vary from shape to shape: what DIM's local MI term rewards a code
    for capturing (Hjelm et al., ICLR 2019, Sec. 3.2). With one or a few shapes
    per image the code learns colour and position instead, and one epoch scores
    near chance. Fully determined by ``seed``.

    Returns:
        images: uint8 ``(num_images, 3, image_size, image_size)``.
        labels: int64 ``(num_images,)``: 0 circle, 1 square, 2 triangle.
    """
    if grid < 1 or not 0.0 < fill <= 1.0:
        raise ValueError(f"need grid >= 1 and 0 < fill <= 1, got grid={grid}, fill={fill}")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, num_images)
    images = np.full((num_images, image_size, image_size, 3), 0.12, dtype=np.float32)  # one dark background
    pixel = np.arange(image_size, dtype=np.float32) + 0.5  # pixel centres
    cell = image_size / grid
    for row in range(grid):
        for column in range(grid):
            radius = rng.uniform(0.28, 0.42, num_images).astype(np.float32) * cell  # half the extent, in pixels
            centre_x = column * cell + rng.uniform(radius, cell - radius).astype(np.float32)
            centre_y = row * cell + rng.uniform(radius, cell - radius).astype(np.float32)
            shade = rng.uniform(0.0, 1.0, (num_images, 3)).astype(np.float32)
            shade[np.arange(num_images), rng.integers(0, 3, num_images)] = rng.uniform(0.6, 1.0, num_images)  # bright
            present = rng.uniform(size=num_images) < fill
            # the shape stays inside its cell, so only the cell's pixels are drawn
            top, bottom = int(row * cell), min(image_size, int(np.ceil((row + 1) * cell)))
            left, right = int(column * cell), min(image_size, int(np.ceil((column + 1) * cell)))
            dx = pixel[None, None, left:right] - centre_x[:, None, None]  # (N, 1, w)
            dy = pixel[None, top:bottom, None] - centre_y[:, None, None]  # (N, h, 1)
            r = radius[:, None, None]
            circle = dx**2 + dy**2 <= r**2
            square = np.maximum(np.abs(dx), np.abs(dy)) <= 0.85 * r
            triangle = (dy <= r) & (np.abs(dx) <= 0.6 * (dy + r))  # apex at the top, base at the bottom
            mask = np.choose(labels[:, None, None], [circle, square, triangle]) & present[:, None, None]  # (N, h, w)
            np.copyto(images[:, top:bottom, left:right], shade[:, None, None, :], where=mask[..., None])

    # Pixel noise and rounding to bytes, a block of images at a time: the draws come in the order of one
    # whole-array draw (so the images do not depend on the block size), and no whole-array temporaries are made.
    pixels = np.empty((num_images, 3, image_size, image_size), dtype=np.uint8)  # (N, 3, S, S)
    block = max(1, _BLOCK_VALUES // images[0].size)
    noise = np.empty((min(block, num_images), *images.shape[1:]), dtype=np.float32)
    for start in range(0, num_images, block):
        scene = images[start : start + block]  # (b, S, S, 3), a view
        draw = noise[: len(scene)]
        rng.standard_normal(draw.shape, dtype=np.float32, out=draw)
        draw *= 0.02
        scene += draw
        np.clip(scene, 0.0, 1.0, out=scene)
        scene *= 255.0
        scene += 0.5
        pixels[start : start + block] = scene.transpose(0, 3, 1, 2)  # truncated to uint8, as astype does
    return torch.from_numpy(pixels), torch.from_numpy(labels).long()
