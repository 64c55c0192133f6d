"""Result grids: layout, padding of short rows and the query frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrieval.grid import result_grid, save_result_grid
from retrieval.index import Index
from tests.retrieval.conftest import NUM_GOOD_IMAGES, random_image


def test_grid_layout_pads_short_rows_and_frames_queries(model, image_dir: Path, tmp_path: Path) -> None:
    index = Index.build(model, image_dir, tmp_path / "index", num_workers=0)
    queries = [image_dir / "img001.png", random_image(np.random.default_rng(5))]
    results = index.search(queries, k=NUM_GOOD_IMAGES + 2)  # more than the index holds: rows of 30
    grid = result_grid(results, tile_size=16, query_border=(255, 0, 0))
    columns = 1 + NUM_GOOD_IMAGES
    assert grid.shape == (3, 2 * 18 + 2, columns * 18 + 2)
    assert grid[:, 2, 2].tolist() == [1.0, 0.0, 0.0]  # the query tile's red frame

    results[1].neighbours = results[1].neighbours[:3]  # a short row is padded with grey tiles
    assert result_grid(results, tile_size=16).shape == grid.shape
    assert grid.min() >= 0 and grid.max() <= 1

    out = tmp_path / "grid.png"
    save_result_grid(results, out, tile_size=16)
    assert out.stat().st_size > 0


def test_empty_results_are_refused() -> None:
    with pytest.raises(ValueError, match="no results"):
        result_grid([])
