"""Query-and-neighbours pictures (a query, then its nearest neighbours), shared by eval and search."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.utils import make_grid

QUERY_BORDER = (220, 40, 40)


def neighbour_grid(rows: Tensor, query_border: tuple[int, int, int] | None = QUERY_BORDER, padding: int = 2) -> Tensor:
    """Lay out rows of images, each a query followed by its neighbours, as one picture.

    Args:
        rows: uint8 ``(R, 1 + n, C, S, S)``: per row the query, then n neighbours
            nearest first (C = 1 or 3; grey is shown as RGB).
        query_border: RGB colour of a frame painted on each query, or ``None``.
        padding: white pixels between tiles.

    Returns:
        ``(3, H, W)`` float32 in [0, 1], ready for ``torchvision.utils.save_image``.
    """
    if rows.dim() != 5 or rows.dtype != torch.uint8:
        raise ValueError(f"rows must be uint8 of shape (R, 1 + n, C, S, S), got {rows.dtype} {tuple(rows.shape)}")
    rows = rows.expand(-1, -1, 3, -1, -1) if rows.shape[2] == 1 else rows.clone()
    if query_border is not None:
        width = max(1, rows.shape[-1] // 32)
        paint = torch.tensor(query_border, dtype=torch.uint8).view(1, 3, 1, 1)
        query = rows[:, 0].clone()  # (R, 3, S, S)
        query[..., :width, :], query[..., -width:, :] = paint, paint
        query[..., :, :width], query[..., :, -width:] = paint, paint
        rows = torch.cat([query[:, None], rows[:, 1:]], dim=1)
    tiles = rows.flatten(0, 1).float().div_(255.0)  # (R * (1 + n), 3, S, S)
    return make_grid(tiles, nrow=rows.shape[1], padding=padding, pad_value=1.0)
