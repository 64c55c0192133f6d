"""Result grids: each tile holds the picture it stands for, short rows are padded, queries are framed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dim.core.grids import QUERY_BORDER
from dim.core.images import image_to_uint8, open_image
from retrieval.grid import GRID_PADDING, result_grid, save_result_grid
from retrieval.index import Index
from tests.retrieval.conftest import NUM_GOOD_IMAGES, random_image

TILE = 16
STEP = TILE + GRID_PADDING


def tile(picture: torch.Tensor, row: int, column: int) -> torch.Tensor:
    """The ``(3, TILE, TILE)`` tile at ``row``, ``column`` of a ``(3, H, W)`` grid."""
    top, left = GRID_PADDING + row * STEP, GRID_PADDING + column * STEP
    return picture[:, top : top + TILE, left : left + TILE]


def check_query_tile(found: torch.Tensor, image: Image.Image, border: tuple[int, int, int]) -> None:
    """A query tile: the image's thumbnail inside a one-pixel frame of ``border`` (16 px tiles: 16 // 32 -> 1 px)."""
    expected = image_to_uint8(image, TILE, 3)
    assert torch.equal(found[:, 1:-1, 1:-1], expected[:, 1:-1, 1:-1])
    frame = torch.tensor(border, dtype=torch.uint8)
    for edge in (found[:, 0, :], found[:, -1, :], found[:, :, 0], found[:, :, -1]):
        assert torch.equal(edge, frame[:, None].expand_as(edge))


def decode(path: Path) -> torch.Tensor:
    with Image.open(path) as picture:
        assert picture.mode == "RGB"
        return torch.from_numpy(np.array(picture)).permute(2, 0, 1)  # (3, H, W) uint8


def test_every_tile_holds_its_image_and_short_rows_are_padded(model, image_dir: Path, tmp_path: Path) -> None:
    index = Index.build(model, image_dir, tmp_path / "index", num_workers=0)
    outside = random_image(np.random.default_rng(5))
    queries = [image_dir / "img001.png", outside]
    results = index.search(queries, k=NUM_GOOD_IMAGES + 2)  # more than the index holds: rows of 30
    assert [len(result.neighbours) for result in results] == [NUM_GOOD_IMAGES, NUM_GOOD_IMAGES]
    results[1].neighbours = results[1].neighbours[:3]  # a short row is padded with grey tiles

    grid = result_grid(results, tile_size=TILE, query_border=(255, 0, 0))
    columns = 1 + NUM_GOOD_IMAGES
    assert grid.shape == (3, 2 * STEP + GRID_PADDING, columns * STEP + GRID_PADDING)
    assert grid.dtype == torch.float32 and grid.min() >= 0 and grid.max() <= 1
    pixels = (grid * 255).round().to(torch.uint8)  # tiles are k / 255 exactly
    assert torch.allclose(pixels.float() / 255, grid, atol=1e-6)

    check_query_tile(tile(pixels, 0, 0), open_image(queries[0]), (255, 0, 0))
    check_query_tile(tile(pixels, 1, 0), outside, (255, 0, 0))
    for row, result in enumerate(results):
        for column, hit in enumerate(result.neighbours, start=1):
            assert torch.equal(tile(pixels, row, column), image_to_uint8(open_image(hit.path), TILE, 3)), (row, hit)
    assert Path(results[0].neighbours[0].path) == queries[0]  # the indexed query finds itself first
    for column in range(4, columns):
        assert tile(pixels, 1, column).eq(128).all()
    # The padding between tiles is white.
    assert pixels[:, :GRID_PADDING, :].eq(255).all() and pixels[:, :, :GRID_PADDING].eq(255).all()
    assert pixels[:, TILE + GRID_PADDING : STEP + GRID_PADDING, :].eq(255).all()

    unframed = (result_grid(results, tile_size=TILE, query_border=None) * 255).round().to(torch.uint8)
    assert torch.equal(tile(unframed, 0, 0), image_to_uint8(open_image(queries[0]), TILE, 3))
    assert torch.equal(unframed[:, :, STEP:], pixels[:, :, STEP:])  # the frame touches the query column only


def test_saved_png_holds_the_grid_with_the_default_frame(model, image_dir: Path, tmp_path: Path) -> None:
    index = Index.build(model, image_dir, tmp_path / "index", num_workers=0)
    results = index.search([image_dir / "nested" / "img003.png"], k=3)
    out = tmp_path / "grid.png"
    save_result_grid(results, out, tile_size=TILE)
    picture = decode(out)
    assert picture.shape == (3, STEP + GRID_PADDING, 4 * STEP + GRID_PADDING)
    check_query_tile(tile(picture, 0, 0), open_image(image_dir / "nested" / "img003.png"), QUERY_BORDER)
    for column, hit in enumerate(results[0].neighbours, start=1):
        assert torch.equal(tile(picture, 0, column), image_to_uint8(open_image(hit.path), TILE, 3))


def test_a_neighbour_whose_file_has_gone_is_drawn_grey(model, image_dir: Path, tmp_path: Path) -> None:
    index = Index.build(model, image_dir, tmp_path / "index", num_workers=0)
    results = index.search([image_dir / "img001.png"], k=2)
    Path(results[0].neighbours[1].path).unlink()
    pixels = (result_grid(results, tile_size=TILE) * 255).round().to(torch.uint8)
    assert tile(pixels, 0, 2).eq(128).all()
    assert torch.equal(tile(pixels, 0, 1), image_to_uint8(open_image(results[0].neighbours[0].path), TILE, 3))


def test_empty_results_are_refused() -> None:
    with pytest.raises(ValueError, match="no results"):
        result_grid([])
