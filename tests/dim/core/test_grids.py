import pytest
import torch

from dim.core.grids import QUERY_BORDER, neighbour_grid


def test_layout_and_query_frame():
    rows = torch.full((2, 4, 3, 16, 16), 7, dtype=torch.uint8)  # 2 queries, 3 neighbours each
    grid = neighbour_grid(rows, padding=2)
    assert grid.shape == (3, 2 * 18 + 2, 4 * 18 + 2)
    corner = grid[:, 2, 2] * 255  # top-left pixel of the first query tile: the frame
    assert torch.allclose(corner, torch.tensor(QUERY_BORDER, dtype=torch.float32))
    neighbour_corner = grid[:, 2, 2 + 18] * 255  # first neighbour: untouched
    assert torch.allclose(neighbour_corner, torch.full((3,), 7.0))
    assert rows.eq(7).all()  # the input is not painted on


def test_grey_rows_become_rgb_and_bad_input_is_refused():
    assert neighbour_grid(torch.zeros(1, 2, 1, 8, 8, dtype=torch.uint8), query_border=None).shape[0] == 3
    with pytest.raises(ValueError, match="uint8"):
        neighbour_grid(torch.zeros(1, 2, 3, 8, 8))
