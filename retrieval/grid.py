"""Result grids: one row per query, the query image then its neighbours."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from PIL import Image
from torch import Tensor
from torchvision.utils import save_image

from dim.core.grids import QUERY_BORDER, neighbour_grid
from dim.core.images import DECODE_ERRORS, image_to_uint8, open_image
from retrieval.index import QueryResult

GRID_PADDING = 2


def thumbnail(image: Image.Image | None, size: int) -> Tensor:
    """``(3, size, size)`` uint8: shorter side resized to ``size``, centre-cropped; grey for ``None``."""
    if image is None:
        return torch.full((3, size, size), 128, dtype=torch.uint8)
    return image_to_uint8(image, size, 3)


def open_or_none(path: str) -> Image.Image | None:
    """A neighbour's image, or ``None`` when the file has gone or broken since it was indexed."""
    try:
        return open_image(path)
    except DECODE_ERRORS:
        return None


def result_grid(
    results: Sequence[QueryResult],
    tile_size: int = 96,
    query_border: tuple[int, int, int] | None = QUERY_BORDER,
) -> Tensor:
    """Draw search results as an image grid.

    Args:
        results: from :meth:`retrieval.Index.search`; each needs its ``image``.
        tile_size: side of each square thumbnail, in pixels.
        query_border: RGB colour framing each query thumbnail, or ``None`` for no frame.

    Returns:
        ``(3, H, W)`` float32 in [0, 1] with ``H = R·(tile_size + 2) + 2`` and
        ``W = (k + 1)·(tile_size + 2) + 2`` for R queries and the longest result
        list k; shorter rows (fewer indexed images than k) are padded with grey tiles.
    """
    if not results:
        raise ValueError("no results to draw")
    columns = 1 + max(len(result.neighbours) for result in results)
    rows = []
    for result in results:
        tiles = [thumbnail(result.image, tile_size)]
        tiles += [thumbnail(open_or_none(hit.path), tile_size) for hit in result.neighbours]
        tiles += [thumbnail(None, tile_size) for _ in range(columns - len(tiles))]
        rows.append(torch.stack(tiles))
    return neighbour_grid(torch.stack(rows), query_border, padding=GRID_PADDING)  # rows: (R, columns, 3, S, S)


def save_result_grid(results: Sequence[QueryResult], path: str | os.PathLike, tile_size: int = 96) -> None:
    """Write :func:`result_grid` to an image file (PNG by extension)."""
    save_image(result_grid(results, tile_size), path)
