"""The Python search API: build, load, add, search, consistency and model checks."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest

from retrieval import ModelMismatchError, ann, find_duplicates
from retrieval.index import Index
from retrieval.store import METADATA_FILE, read_metadata
from tests.retrieval.conftest import (
    BAD_FILES,
    NUM_GOOD_IMAGES,
    random_image,
    tiny_model,
    write_images,
)


@pytest.fixture
def index(model, image_dir: Path, tmp_path: Path) -> Index:
    return Index.build(model, image_dir, tmp_path / "index", num_workers=0)


def test_build_indexes_good_images_and_lists_bad_ones(index: Index, image_dir: Path) -> None:
    assert len(index) == NUM_GOOD_IMAGES
    assert set(index.skipped) == BAD_FILES
    assert "empty" in index.skipped["broken/empty.jpg"]
    assert "not an image" in index.skipped["broken/notes.jpg"]
    assert "truncated" in index.skipped["broken/truncated.jpg"]
    lines = (index.directory / "skipped.txt").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in lines) == sorted(BAD_FILES)
    assert all(line.split("\t")[1] for line in lines)

    records = read_metadata(index.directory)
    assert [r.id for r in records] == list(range(NUM_GOOD_IMAGES))
    for record in records:
        assert (image_dir / record.path).stat().st_size == record.size
    assert any(r.path.startswith("nested/") for r in records) and any(r.path.endswith(".JPG") for r in records)

    manifest = json.loads((index.directory / "manifest.json").read_text())
    assert manifest["counts"] == {"indexed": NUM_GOOD_IMAGES, "skipped": 3}
    assert manifest["index"]["type"] == "flat" and manifest["index"]["requested"] == "auto"
    assert manifest["model"]["name"] == "test:tiny" and manifest["feature_dim"] == 32
    assert manifest["preprocessing"]["image_size"] == 16
    assert not list(index.directory.glob("*.tmp"))  # atomic writes leave no temporary files


def test_search_returns_itself_first_and_sorted_scores(index: Index, image_dir: Path) -> None:
    inside = image_dir / "nested" / "img003.png"
    outside = image_dir.parent / "outside.png"
    random_image(np.random.default_rng(99)).save(outside)
    results = index.search([inside, outside, random_image(np.random.default_rng(7))], k=5)

    assert len(results) == 3
    for result in results:
        scores = [hit.score for hit in result.neighbours]
        assert len(scores) == 5 and scores == sorted(scores, reverse=True)
        assert [hit.rank for hit in result.neighbours] == list(range(5))
        assert all(Path(hit.path).is_file() for hit in result.neighbours)
    first = results[0].neighbours[0]
    assert Path(first.path) == inside and first.score == pytest.approx(1.0, abs=1e-5)
    assert results[0].to_dict()["results"][0] == {"path": str(inside), "score": first.score, "rank": 0, "id": first.id}
    assert results[2].query == "<image 2>"


def test_search_k_larger_than_index(index: Index, image_dir: Path) -> None:
    (result,) = index.search(image_dir / "img001.png", k=NUM_GOOD_IMAGES + 10)
    assert len(result.neighbours) == NUM_GOOD_IMAGES
    assert len({hit.id for hit in result.neighbours}) == NUM_GOOD_IMAGES


def test_load_round_trip_and_defaults(index: Index, image_dir: Path) -> None:
    loaded = Index.load(index.directory, model=tiny_model(seed=0))
    assert len(loaded) == len(index) and loaded.skipped == index.skipped
    query = image_dir / "img005.png"
    assert loaded.search(query)[0].to_dict() == index.search(query)[0].to_dict()
    with pytest.raises(ValueError, match="in-memory model"):
        Index.load(index.directory)  # no checkpoint recorded, so the model must be given


def test_wrong_model_is_refused(index: Index) -> None:
    with pytest.raises(ModelMismatchError, match="weights_sha256"):
        Index.load(index.directory, model=tiny_model(seed=1))


@pytest.mark.parametrize("old_format", [0, 1])  # format 1 had no record of its write
def test_an_index_of_another_manifest_format_is_refused(index: Index, old_format: int) -> None:
    path = index.directory / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "format": old_format}))
    expected = f"manifest format {old_format}, but this version of dim-toolkit reads format 2: rebuild it"
    with pytest.raises(ValueError, match=expected):
        Index.load(index.directory, model=tiny_model())


def test_metadata_and_ids_mismatch_names_both_counts(index: Index) -> None:
    metadata = index.directory / METADATA_FILE
    lines = metadata.read_text().splitlines(keepends=True)
    metadata.write_text("".join(lines[:-2]))  # drop two rows
    expected = rf"holds {NUM_GOOD_IMAGES} vectors but {METADATA_FILE} lists {NUM_GOOD_IMAGES - 2} images"
    with pytest.raises(ValueError, match=expected):
        Index.load(index.directory, model=tiny_model())


def test_changed_ids_are_detected(index: Index) -> None:
    metadata = index.directory / METADATA_FILE
    with metadata.open() as handle:
        rows = list(csv.reader(handle))
    rows[1][0] = "999"
    with metadata.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    with pytest.raises(ValueError, match="ids in index.faiss and metadata.csv differ"):
        Index.load(index.directory, model=tiny_model())


def test_build_refuses_an_existing_index(index: Index, image_dir: Path, model) -> None:
    with pytest.raises(FileExistsError, match="already holds an index"):
        Index.build(model, image_dir, index.directory)
    rebuilt = Index.build(model, image_dir, index.directory, overwrite=True, num_workers=0)
    assert len(rebuilt) == NUM_GOOD_IMAGES


def test_build_rejects_empty_folder_and_bad_type(tmp_path: Path, model) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        Index.build(model, tmp_path / "empty", tmp_path / "index")
    with pytest.raises(ValueError, match="index_type"):
        Index.build(model, tmp_path / "empty", tmp_path / "index", index_type="annoy")


def test_add_picks_up_new_files_only(index: Index, image_dir: Path, tmp_path: Path) -> None:
    write_images(image_dir / "more", 4, seed=5, prefix="new")
    random_image(np.random.default_rng(3)).save(image_dir / "broken" / "empty.jpg", format="JPEG")  # repaired
    summary = index.add(image_dir, num_workers=0)
    assert (summary.added, summary.skipped, summary.already_indexed) == (5, 2, NUM_GOOD_IMAGES)
    assert len(index) == NUM_GOOD_IMAGES + 5
    assert {r.id for r in index.records} == set(range(NUM_GOOD_IMAGES + 5))
    assert set(index.skipped) == BAD_FILES - {"broken/empty.jpg"}  # retried, now indexed

    again = index.add(image_dir, num_workers=0)
    assert (again.added, again.skipped, again.already_indexed) == (0, 2, NUM_GOOD_IMAGES + 5)

    elsewhere = tmp_path / "elsewhere"
    (outside,) = write_images(elsewhere, 1, seed=6, prefix="far")
    assert index.add(elsewhere, num_workers=0).added == 1
    reloaded = Index.load(index.directory, model=tiny_model())
    assert len(reloaded) == NUM_GOOD_IMAGES + 6
    assert reloaded.records[-1].path == outside.as_posix()  # stored absolute: outside the image root
    top = reloaded.search(outside, k=1)[0].neighbours[0]
    assert Path(top.path) == outside
    hit = reloaded.search(image_dir / "more" / "new001.png", k=1)[0].neighbours[0]
    assert Path(hit.path) == image_dir / "more" / "new001.png"


def test_add_upgrades_auto_index_when_it_grows(index: Index, image_dir: Path, monkeypatch) -> None:
    monkeypatch.setattr(ann, "FLAT_MAX_VECTORS", NUM_GOOD_IMAGES + 2)
    write_images(image_dir / "more", 5, seed=8, prefix="new")
    index.add(image_dir, num_workers=0)
    assert index.index_type == "ivf" and index.manifest["index"]["search"]["nprobe"] >= 1
    reloaded = Index.load(index.directory, model=tiny_model())
    assert reloaded.index_type == "ivf"
    assert sorted(ann.index_ids(reloaded.faiss_index)) == list(range(NUM_GOOD_IMAGES + 5))
    for name in ("img004.JPG", "more/new002.JPG"):
        assert Path(reloaded.search(image_dir / name, k=1)[0].neighbours[0].path) == image_dir / name


def test_flat_hnsw_and_ivf_agree_on_a_small_set(model, image_dir: Path, tmp_path: Path) -> None:
    queries = [image_dir / "img001.png", image_dir / "nested" / "img006.JPG", image_dir / "img011.png"]
    found = {}
    for kind in ("flat", "hnsw", "ivf"):
        index = Index.build(model, image_dir, tmp_path / kind, index_type=kind, num_workers=0)
        assert index.index_type == kind
        found[kind] = [[hit.path for hit in result.neighbours] for result in index.search(queries, k=5)]
    assert found["hnsw"] == found["flat"]
    assert found["ivf"] == found["flat"]  # a single IVF list at this size: exhaustive


def test_copied_index_directory_still_finds_images(index: Index, tmp_path: Path, image_dir: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(index.directory, copy)
    result = Index.load(copy, model=tiny_model()).search(image_dir / "img001.png", k=1)[0]
    assert Path(result.neighbours[0].path) == image_dir / "img001.png"


def test_symlinked_files_stay_relative_to_the_root(model, image_dir: Path, tmp_path: Path) -> None:
    linked = tmp_path / "linked" / "cats"
    linked.mkdir(parents=True)
    for name in ("img001.png", "img002.JPG"):
        (linked / name).symlink_to(image_dir / name)
    index = Index.build(model, tmp_path / "linked", tmp_path / "index", num_workers=0)
    assert [record.path for record in index.records] == ["cats/img001.png", "cats/img002.JPG"]


def test_an_ivfpq_index_is_queried_extended_and_deduplicated(model, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    write_images(folder, 100, seed=11)
    shutil.copyfile(folder / "img001.png", folder / "img001-copy.png")  # the same bytes: an exact duplicate
    index = Index.build(model, folder, tmp_path / "pq", index_type="ivfpq", num_workers=0)
    info = json.loads((index.directory / "manifest.json").read_text())["index"]
    assert info["type"] == info["requested"] == "ivfpq"
    # 101 vectors: 101 // 39 = 2 lists, 32 one-dimensional sub-vectors of floor(log2(101 / 39)) = 1 bit
    assert info["build"] == {"nlist": 2, "M": 32, "nbits": 1}
    assert set(info["search"]) == {"nprobe"} and 0 < info["recall_at_10"] <= 1

    loaded = Index.load(index.directory, model=tiny_model())  # the store's size, checksum and id checks pass
    assert isinstance(loaded.faiss_index, faiss.IndexIVFPQ) and len(loaded) == 101
    # Query: with both lists probed, the hits are the best inner products with the decoded vectors.
    loaded.manifest["index"]["search"] = {"nprobe": 2}
    vectors = ann.stored_vectors(loaded.faiss_index)  # (101, 32) decoded
    query = loaded.vector_of(7)
    scores, found = loaded.search_vectors(query[None], k=5)
    np.testing.assert_allclose(scores[0], np.sort(vectors @ query)[::-1][:5], atol=1e-5)
    np.testing.assert_allclose(scores[0], [query @ loaded.vector_of(int(i)) for i in found[0]], atol=1e-5)
    (result,) = loaded.search(folder / "img005.png", k=5)
    assert len(result.neighbours) == 5 and sorted(result.neighbours, key=lambda hit: -hit.score) == result.neighbours

    write_images(folder / "more", 4, seed=12, prefix="new")
    assert loaded.add(folder, num_workers=0).added == 4
    reloaded = Index.load(index.directory, model=tiny_model())
    assert reloaded.index_type == "ivfpq" and reloaded.manifest["index"]["build"] == info["build"]  # added, not rebuilt
    assert sorted(ann.index_ids(reloaded.faiss_index)) == list(range(105))

    # Dedup: the copy pairs with its original (with 4-byte codes, other images may join their group).
    by_path = {record.path: record.id for record in reloaded.records}
    original, copy = by_path["img001.png"], by_path["img001-copy.png"]
    (group,) = [group for group in find_duplicates(reloaded) if original in {image.id for image in group.images}]
    assert any({a, b} == {original, copy} for a, b, _ in group.pairs)


def test_an_index_inside_its_image_folder_leaves_its_own_files_out(tmp_path: Path, image_dir: Path) -> None:
    from PIL import Image

    inside = image_dir / "pictures.idx"
    index = Index.build(tiny_model(), image_dir, inside, progress=False)
    (inside / "model").mkdir()
    Image.new("RGB", (16, 16), "red").save(inside / "model" / "curves.png")  # what a trained model keeps there
    summary = index.add(image_dir, progress=False)
    assert summary.added == 0 and not any("pictures.idx" in record.path for record in index.records)
