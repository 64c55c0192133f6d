"""Near-duplicate groups: planted copies are found and nothing else; groups, sheet and JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dim.core.images import image_to_uint8, open_image
from retrieval.cli import main
from retrieval.dedup import (
    DEFAULT_THRESHOLD,
    contact_sheet,
    find_duplicates,
    save_contact_sheet,
    similar_pairs,
)
from retrieval.grid import GRID_PADDING
from retrieval.index import Index
from tests.retrieval.conftest import PLANTED_DUPLICATES, thumbnail_model

TILE = 16
STEP = TILE + GRID_PADDING


@pytest.fixture
def index(duplicates_dir: Path, tmp_path: Path) -> Index:
    return Index.build(thumbnail_model(), duplicates_dir, tmp_path / "index", num_workers=0)


@pytest.fixture
def built(dim_checkpoint: Path, image_dir: Path, tmp_path: Path) -> Path:
    Index.build(dim_checkpoint, image_dir, tmp_path / "dim-index", device="cpu", num_workers=0)
    return tmp_path / "dim-index"


def test_planted_duplicates_are_found_and_nothing_else(index: Index, duplicates_dir: Path) -> None:
    """With thumbnail features (see ``thumbnail_model``), the resized and the re-encoded copy join their originals."""
    groups = find_duplicates(index)
    found = {frozenset(Path(image.path).relative_to(duplicates_dir).as_posix() for image in g.images) for g in groups}
    assert found == {frozenset(pair) for pair in PLANTED_DUPLICATES.items()}
    for group in groups:
        ((a, b, score),) = group.pairs
        assert {a, b} == {image.id for image in group.images} and DEFAULT_THRESHOLD <= score <= 1.0 + 1e-5
        assert [image.best_score for image in group.images] == [score, score]
    # The margin is real: the closest unrelated pair is far below the threshold.
    a, b, scores = similar_pairs(index, -1.0)
    planted = {frozenset((index.path_of(int(x)), index.path_of(int(y)))) for x, y in zip(a, b)} & {
        frozenset(str(duplicates_dir / p) for p in pair) for pair in PLANTED_DUPLICATES.items()
    }
    assert len(planted) == 2 and len(a) == 14 * 13 // 2  # threshold -1 keeps every pair
    unrelated = [s for x, y, s in zip(a, b, scores) if frozenset((index.path_of(int(x)), index.path_of(int(y)))) not in planted]
    assert max(unrelated) < DEFAULT_THRESHOLD - 0.2


def test_groups_are_connected_components_largest_first(index: Index, duplicates_dir: Path) -> None:
    shutil.copy(duplicates_dir / "b/photo07.png", duplicates_dir / "copies/photo07-a.png")
    shutil.copy(duplicates_dir / "b/photo07.png", duplicates_dir / "copies/photo07-b.png")
    index.add(duplicates_dir, num_workers=0)
    groups = find_duplicates(index)
    assert [group.size for group in groups] == [3, 2, 2]
    assert {Path(image.path).name for image in groups[0].images} == {"photo07.png", "photo07-a.png", "photo07-b.png"}
    assert len(groups[0].pairs) == 3 and all(score == pytest.approx(1.0, abs=1e-5) for _, _, score in groups[0].pairs)
    assert [pair[2] for pair in groups[0].pairs] == sorted((pair[2] for pair in groups[0].pairs), reverse=True)
    weakest = min(groups, key=lambda group: group.pairs[0][2])
    score = weakest.pairs[0][2]
    assert weakest in find_duplicates(index, threshold=score)  # at the threshold counts
    assert weakest not in find_duplicates(index, threshold=float(np.nextafter(np.float32(score), np.float32(2))))
    with pytest.raises(ValueError, match="between -1 and 1"):
        find_duplicates(index, threshold=1.5)


def test_contact_sheet_has_one_row_per_group(index: Index, duplicates_dir: Path, tmp_path: Path) -> None:
    shutil.copy(duplicates_dir / "b/photo07.png", duplicates_dir / "copies/photo07-a.png")
    shutil.copy(duplicates_dir / "b/photo07.png", duplicates_dir / "copies/photo07-b.png")
    index.add(duplicates_dir, num_workers=0)
    groups = find_duplicates(index)
    out = tmp_path / "sheet.png"
    save_contact_sheet(groups, out, tile_size=TILE)
    with Image.open(out) as picture:
        pixels = torch.from_numpy(np.array(picture.convert("RGB"))).permute(2, 0, 1)
    assert pixels.shape == (3, 3 * STEP + GRID_PADDING, 3 * STEP + GRID_PADDING)  # 3 groups, at most 3 images
    for row, group in enumerate(groups):
        for column in range(3):
            top, left = GRID_PADDING + row * STEP, GRID_PADDING + column * STEP
            tile = pixels[:, top : top + TILE, left : left + TILE]
            if column < group.size:
                assert torch.equal(tile, image_to_uint8(open_image(group.images[column].path), TILE, 3))
            else:
                assert tile.eq(128).all()  # a shorter group is padded grey
    with pytest.raises(ValueError, match="lower the threshold"):
        contact_sheet([])


def test_dedup_command_json_and_sheet(built: Path, image_dir: Path, tmp_path: Path) -> None:
    """The command, on an index of the one-step DIM model: an identical copy scores 1, so a threshold near 1 isolates it."""
    shutil.copy(image_dir / "img001.png", image_dir / "copy-of-img001.png")
    CliRunner().invoke(main, ["add", str(built), str(image_dir), "--device", "cpu", "--num-workers", "0"])
    sheet = tmp_path / "sheet.png"
    result = CliRunner().invoke(main, ["dedup", str(built), "--threshold", "0.99999", "--json", "--sheet", str(sheet)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["threshold"] == 0.99999
    (group,) = report["groups"]
    assert sorted(Path(image["path"]).name for image in group["images"]) == ["copy-of-img001.png", "img001.png"]
    assert group["size"] == 2 and group["pairs"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert sorted(group["pairs"][0]["ids"]) == sorted(image["id"] for image in group["images"])
    with Image.open(sheet) as picture:
        assert picture.size == (2 * (96 + 2) + 2, 96 + 2 + 2)
    table = CliRunner().invoke(main, ["dedup", str(built), "--threshold", "0.99999"]).output
    assert table.startswith("1 groups of near-duplicates (cosine >= 0.99999) among 31 images")
    assert str(image_dir / "copy-of-img001.png") in table
