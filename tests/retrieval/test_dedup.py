"""Duplicate groups: planted copies are found and nothing else; exact copies apart; histogram, sheet, CSV, JSON."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dim.core.images import image_to_uint8, open_image
from retrieval import ann
from retrieval.cleanup import actions, plan_moves
from retrieval.cli import main
from retrieval.dedup import (
    DEFAULT_THRESHOLD,
    EXPORT_FIELDS,
    HISTOGRAM_BIN_WIDTH,
    contact_sheet,
    content_hashes,
    find_duplicates,
    nearest_scores,
    report,
    save_contact_sheet,
    save_csv,
    score_histogram,
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
    found = json.loads(result.stdout)
    assert found["threshold"] == 0.99999 and found["near"] == []
    (group,) = found["exact"]  # the same bytes: an exact duplicate, reported apart
    assert sorted(Path(image["path"]).name for image in group["images"]) == ["copy-of-img001.png", "img001.png"]
    assert group["group"] == 1 and group["kind"] == "exact"
    assert group["size"] == 2 and group["pairs"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert sorted(group["pairs"][0]["ids"]) == sorted(image["id"] for image in group["images"])
    assert {image["action"] for image in group["images"]} == {"keep", "move"}
    with Image.open(sheet) as picture:
        assert picture.size == (2 * (96 + 2) + 2, 96 + 2 + 2)
    table = CliRunner().invoke(main, ["dedup", str(built), "--threshold", "0.99999"]).output
    assert table.startswith(
        "1 groups of exact duplicates (same bytes) and 0 groups of near-duplicates (cosine >= 0.99999) among 31 "
        "images; keeping the largest copy of each"
    )
    assert "group 1, exact: 2 copies" in table
    # Same pixels and bytes: the shorter path is kept.
    assert "keep  1.0000" in table and table.index(str(image_dir / "img001.png")) < table.index("move  ")
    assert str(image_dir / "copy-of-img001.png") in table.split("move  ")[1]


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_exact_duplicates_are_reported_apart_and_found_at_any_threshold(index: Index, duplicates_dir: Path) -> None:
    """Byte-identical files form exact groups; a near group that holds one still says which copies are identical."""
    shutil.copy(duplicates_dir / "b/photo07.png", duplicates_dir / "copies/photo07-copy.png")
    shutil.copy(duplicates_dir / "a/photo00.png", duplicates_dir / "copies/photo00-copy.png")
    index.add(duplicates_dir, num_workers=0)
    groups = find_duplicates(index)
    names = [sorted(Path(image.path).name for image in group.images) for group in groups]
    assert [group.kind for group in groups] == ["exact", "near", "near"]
    assert names == [
        ["photo07-copy.png", "photo07.png"],
        ["photo00-copy.png", "photo00-small.png", "photo00.png"],
        ["photo03.jpg", "photo03.png"],
    ]
    exact, near, _ = groups
    assert {image.sha256 for image in exact.images} == {sha256(duplicates_dir / "b/photo07.png")}
    identical = {Path(image.path).name: image.sha256 for image in near.images}
    assert identical["photo00.png"] == identical["photo00-copy.png"] == sha256(duplicates_dir / "a/photo00.png")
    assert identical["photo00-small.png"] is None  # no other indexed file has its size: never read
    for image in (*exact.images, *near.images):  # the facts of every copy, from the file
        stat = os.stat(image.path)
        with Image.open(image.path) as picture:
            assert (image.file_size, image.modified) == (stat.st_size, stat.st_mtime)
            assert (image.width, image.height) == picture.size

    # At threshold 1 the rounding of identical vectors may miss them; hashing does not.
    at_one = find_duplicates(index, threshold=1.0)
    assert {frozenset(Path(image.path).name for image in group.images) for group in at_one} == {
        frozenset({"photo07-copy.png", "photo07.png"}), frozenset({"photo00-copy.png", "photo00.png"}),
    }
    assert all(group.kind == "exact" for group in at_one)


def test_content_hashes_read_only_files_of_a_shared_size(tmp_path: Path) -> None:
    files = {"a": b"same bytes", "b": b"same bytes", "c": b"other byte", "d": b"unique size!"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    hashes = content_hashes([tmp_path / name for name in files] + [tmp_path / "missing"])
    assert hashes == [hashlib.sha256(files[name]).hexdigest() for name in "abc"] + [None, None]


def test_nearest_scores_and_their_histogram(index: Index) -> None:
    vectors, ids = ann.stored_vectors(index.faiss_index), ann.index_ids(index.faiss_index)
    similarity = vectors @ vectors.T  # (N, N), the reference by brute force
    np.fill_diagonal(similarity, -np.inf)
    scores = nearest_scores(index)
    np.testing.assert_allclose(scores, similarity.max(axis=1), atol=1e-5)
    histogram = score_histogram(index)
    assert histogram.total == len(ids) == 14 and histogram.edges[-1] == 1.0
    np.testing.assert_allclose(np.diff(histogram.edges), HISTOGRAM_BIN_WIDTH, atol=1e-6)
    assert histogram.edges[0] <= scores.min() < histogram.edges[0] + HISTOGRAM_BIN_WIDTH
    expected, _ = np.histogram(scores, bins=histogram.edges)
    np.testing.assert_array_equal(histogram.counts, expected)
    assert histogram.at_or_above(0.95) == 4  # the two planted pairs
    data = histogram.to_dict()
    assert sum(data["counts"]) == 14 and len(data["edges"]) == len(data["counts"]) + 1


def test_csv_and_json_export_every_copy_with_its_facts_and_action(
    index: Index, duplicates_dir: Path, tmp_path: Path
) -> None:
    shutil.copy(duplicates_dir / "b/photo07.png", duplicates_dir / "copies/photo07-copy.png")
    index.add(duplicates_dir, num_workers=0)
    groups = find_duplicates(index)
    marks = actions(plan_moves(groups, keep="largest"))
    out = tmp_path / "out" / "groups.csv"
    save_csv(groups, out, marks)
    with open(out, newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == EXPORT_FIELDS
        rows = list(reader)
    assert [(row["group"], row["kind"], Path(row["path"]).name, row["action"]) for row in rows] == [
        ("1", "exact", "photo07.png", "keep"),  # same pixels and bytes: the shorter path
        ("1", "exact", "photo07-copy.png", "move"),
        ("2", "near", "photo00.png", "keep"),  # 64x64 against the 40x40 copy
        ("2", "near", "photo00-small.png", "move"),
        ("3", "near", "photo03.png", "keep"),  # same pixels, more bytes than the JPEG
        ("3", "near", "photo03.jpg", "move"),
    ]
    for row in rows:
        stat = os.stat(row["path"])
        assert int(row["file_size"]) == stat.st_size and int(row["id"]) == next(
            record.id for record in index.records if index.path_of(record.id) == row["path"]
        )
        assert row["modified"] == datetime.fromtimestamp(stat.st_mtime, timezone.utc).isoformat(timespec="seconds")
        assert (row["width"], row["height"]) == (("40", "40") if "small" in row["path"] else ("64", "64"))
    assert rows[0]["sha256"] == rows[1]["sha256"] == sha256(duplicates_dir / "b/photo07.png")
    assert rows[2]["sha256"] == "" and float(rows[2]["best_score"]) >= DEFAULT_THRESHOLD

    found = report(groups, DEFAULT_THRESHOLD, marks)
    assert json.loads(json.dumps(found)) == found  # JSON as it is
    assert [group["group"] for group in found["exact"]] == [1] and [group["group"] for group in found["near"]] == [2, 3]
    flat = [(group["group"], group["kind"], Path(image["path"]).name, image["action"])
            for kind in ("exact", "near") for group in found[kind] for image in group["images"]]
    assert flat == [(int(row["group"]), row["kind"], Path(row["path"]).name, row["action"]) for row in rows]
