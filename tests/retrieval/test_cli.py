"""``dim-search build/add/query`` end to end: with a DIM checkpoint trained for one step, and training its own."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dim.core.grids import QUERY_BORDER
from dim.core.images import image_to_uint8, open_image
from retrieval.cli import main
from retrieval.lock import IndexLock
from tests.retrieval.conftest import (
    BAD_FILES,
    NUM_GOOD_IMAGES,
    random_image,
    write_images,
)


def run(*args: str) -> str:
    """Invoke ``dim-search ARGS`` and return its stdout (progress bars and notes go to stderr)."""
    result = CliRunner().invoke(main, [str(arg) for arg in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def built(dim_checkpoint: Path, image_dir: Path, tmp_path: Path) -> Path:
    index_dir = tmp_path / "index"
    output = run("build", image_dir, "--index", index_dir, "--model", dim_checkpoint, "--device", "cpu",
                 "--num-workers", "0")
    assert f"indexed {NUM_GOOD_IMAGES}, skipped 3" in output
    return index_dir


def test_build_lists_bad_files_and_records_the_checkpoint(built: Path, dim_checkpoint: Path) -> None:
    skipped = dict(line.split("\t") for line in (built / "skipped.txt").read_text().splitlines())
    assert set(skipped) == BAD_FILES
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["model"]["checkpoint"] == str(dim_checkpoint.resolve())
    assert len(manifest["model"]["checkpoint_sha256"]) == 64
    assert manifest["model"]["name"] == "dim:z" and manifest["feature_dim"] == 16


def test_query_json_table_and_grid(built: Path, image_dir: Path, tmp_path: Path) -> None:
    inside = image_dir / "nested" / "img003.png"
    outside = tmp_path / "outside.png"
    Image.new("RGB", (40, 30), (200, 30, 90)).save(outside)
    grid = tmp_path / "grid.png"
    args = ["-k", "4", "--json", "--grid", grid, "--tile-size", "32", "--device", "cpu"]
    output = run("query", built, inside, outside, *args)

    lines = [json.loads(line) for line in output.splitlines()]
    assert [line["query"] for line in lines] == [str(inside), str(outside)]
    for line in lines:
        scores = [hit["score"] for hit in line["results"]]
        assert len(scores) == 4 and scores == sorted(scores, reverse=True)
        assert [hit["rank"] for hit in line["results"]] == [0, 1, 2, 3]
        assert all(Path(hit["path"]).is_file() for hit in line["results"])
    assert lines[0]["results"][0]["path"] == str(inside)
    assert lines[0]["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)

    with Image.open(grid) as picture:
        assert picture.size == (5 * (32 + 2) + 2, 2 * (32 + 2) + 2)  # (k + 1) columns, one row per query
        pixels = np.array(picture.convert("RGB"))  # (H, W, 3)
    for row, (query, line) in enumerate(zip([inside, outside], lines)):
        tiles = [pixels[2 + row * 34 : 34 + row * 34, 2 + column * 34 : 34 + column * 34] for column in range(5)]
        thumbnail = image_to_uint8(open_image(query), 32, 3).permute(1, 2, 0).numpy()
        assert np.array_equal(tiles[0][1:-1, 1:-1], thumbnail[1:-1, 1:-1])  # the query, inside its frame
        assert (tiles[0][0] == QUERY_BORDER).all() and (tiles[0][:, -1] == QUERY_BORDER).all()
        for column, hit in enumerate(line["results"], start=1):  # then each hit, in rank order
            assert np.array_equal(tiles[column], image_to_uint8(open_image(hit["path"]), 32, 3).permute(1, 2, 0).numpy())

    table = run("query", built, inside, "-k", "2", "--device", "cpu")
    assert table.splitlines()[0] == f"query: {inside}"
    assert str(inside) in table.splitlines()[2] and "1.0000" in table.splitlines()[2]


def test_add_picks_up_new_files_only(built: Path, image_dir: Path) -> None:
    write_images(image_dir / "more", 3, seed=4, prefix="new")
    output = run("add", built, image_dir, "--device", "cpu", "--num-workers", "0")
    assert "indexed 3, skipped 3" in output and f"{NUM_GOOD_IMAGES} already indexed" in output
    assert f"now holds {NUM_GOOD_IMAGES + 3} images" in output
    assert "indexed 0, skipped 3" in run("add", built, image_dir, "--device", "cpu", "--num-workers", "0")
    result = json.loads(run("query", built, image_dir / "more" / "new001.png", "-k", "1", "--json", "--device", "cpu"))
    assert result["results"][0]["path"] == str(image_dir / "more" / "new001.png")


def test_wrong_model_and_broken_index_are_refused(
    built: Path, image_dir: Path, tmp_path: Path, dim_checkpoint: Path
) -> None:
    other = tmp_path / "other.pt"
    checkpoint = torch.load(dim_checkpoint, weights_only=True)
    name = next(key for key in checkpoint["modules"]["model"] if key.startswith("encoder.") and key.endswith("weight"))
    checkpoint["modules"]["model"][name] = checkpoint["modules"]["model"][name] + 0.01  # same architecture, other weights
    torch.save(checkpoint, other)
    result = CliRunner().invoke(main, ["query", str(built), str(image_dir / "img001.png"), "--model", str(other)])
    assert result.exit_code != 0
    assert "was built with dim:z" in result.output and "not comparable" in result.output

    shutil.copy(dim_checkpoint, other)
    with open(built / "metadata.csv") as handle:
        lines = handle.readlines()
    (built / "metadata.csv").write_text("".join(lines[:-1]))
    result = CliRunner().invoke(main, ["query", str(built), str(image_dir / "img001.png"), "--model", str(other)])
    assert result.exit_code != 0
    assert f"holds {NUM_GOOD_IMAGES} vectors but metadata.csv lists {NUM_GOOD_IMAGES - 1} images" in result.output


def test_build_errors_are_one_line(tmp_path: Path, image_dir: Path) -> None:
    not_a_checkpoint = tmp_path / "notes.pt"
    not_a_checkpoint.write_text("hello")
    result = CliRunner().invoke(main, ["build", str(image_dir), "--index", str(tmp_path / "i"), "--model",
                                       str(not_a_checkpoint)])
    assert result.exit_code != 0 and "is not a readable checkpoint" in result.output
    assert "Traceback" not in result.output


def test_add_no_wait_exits_with_a_message_while_another_writer_works(built: Path, image_dir: Path) -> None:
    with IndexLock(built):
        result = CliRunner().invoke(main, ["add", str(built), str(image_dir), "--no-wait", "--device", "cpu"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert f"{built} is being written by process" in result.output and "without --no-wait" in result.output


def test_a_model_trained_at_96_px_builds_and_queries_an_index(tmp_path: Path) -> None:
    from dim.cli import main as dim_main

    rng = np.random.default_rng(3)
    photos = tmp_path / "photos"
    for i in range(12):  # 200x150 JPEGs, larger than the 96-px input
        path = photos / ("a" if i % 2 else "b") / f"p{i:02d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        random_image(rng, (200, 150)).save(path, quality=90)
    run_dir = tmp_path / "run"
    trained = CliRunner().invoke(dim_main, [
        "train", str(photos), "--out", str(run_dir), "--image-size", "96", "--stream", "--num-workers", "0",
        "--batch-size", "4", "--max-steps", "2", "--z-dim", "8", "--critic-hidden", "8", "--no-knn",
        "--device", "cpu", "--threads", "1",
    ], catch_exceptions=False)
    assert trained.exit_code == 0, trained.output
    index_dir = tmp_path / "index"
    assert "indexed 12, skipped 0" in run("build", photos, "--index", index_dir, "--model", run_dir, "--device",
                                          "cpu", "--num-workers", "0")
    manifest = json.loads((index_dir / "manifest.json").read_text())
    assert manifest["model"]["image_size"] == 96 and manifest["feature_dim"] == 8
    query = photos / "a" / "p01.jpg"
    result = json.loads(run("query", index_dir, query, "-k", "3", "--json", "--device", "cpu"))
    top = result["results"][0]
    assert top["path"] == str(query) and top["score"] > 0.999  # the file finds itself: the same pixels as indexed


def write_photos(folder: Path, count: int, size: tuple[int, int], seed: int) -> list[Path]:
    """``count`` JPEG photos of ``size`` in two sub-folders."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / ("a" if i % 2 else "b") / f"p{i:02d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        random_image(rng, size).save(path, quality=90)
        paths.append(path)
    return paths


def test_build_without_a_model_trains_one_beside_the_index(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    write_photos(photos, 12, (200, 150), seed=5)
    index_dir = tmp_path / "index"
    result = CliRunner().invoke(main, ["build", str(photos), "--index", str(index_dir), "--train-steps", "2",
                                       "--device", "cpu", "--num-workers", "0"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    model_dir = index_dir / "model"
    assert "indexed 12, skipped 0" in result.stdout and f"model trained into {model_dir}" in result.stdout
    # The size is chosen from the images and stated: the largest of 32, 64, 96 px not above their shorter side.
    assert "at 96 px (chosen from the images: their median shorter side is 150 px)" in result.stderr
    assert "for 10 min or 2 steps" in result.stderr  # the default budget, cut short by the test's step limit
    manifest = json.loads((index_dir / "manifest.json").read_text())
    assert manifest["model"]["checkpoint"] == str((model_dir / "checkpoint.pt").resolve())
    assert manifest["model"]["name"] == "dim:z" and manifest["model"]["image_size"] == 96
    config = json.loads((model_dir / "config.json").read_text())
    assert config["preset"] == "best" and config["image_size"] == 96 and config["time_limit"] == 10
    assert torch.load(model_dir / "checkpoint.pt", weights_only=True)["step"] == 2
    query = photos / "a" / "p01.jpg"
    top = json.loads(run("query", index_dir, query, "-k", "3", "--json", "--device", "cpu"))["results"][0]
    assert top["path"] == str(query) and top["score"] > 0.999

    again = CliRunner().invoke(main, ["build", str(photos), "--index", str(index_dir), "--train-steps", "1"])
    assert again.exit_code != 0 and "already holds an index" in again.output  # refused before any training
    (index_dir / "manifest.json").rename(tmp_path / "manifest.json")  # as if indexing had been interrupted
    again = CliRunner().invoke(main, ["build", str(photos), "--index", str(index_dir), "--train-steps", "1"])
    assert again.exit_code != 0 and f"already holds a model trained for this index: index with it (--model " \
        f"{model_dir})" in again.output


def test_small_images_train_at_32_px_and_training_options_need_no_model(
    tmp_path: Path, image_dir: Path, dim_checkpoint: Path
) -> None:
    index_dir = tmp_path / "index"
    result = CliRunner().invoke(main, ["build", str(image_dir), "--index", str(index_dir), "--train-steps", "1",
                                       "--train-minutes", "0.5", "--device", "cpu", "--num-workers", "0"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"indexed {NUM_GOOD_IMAGES}, skipped 3" in result.stdout  # the broken files are skipped in both phases
    assert "at 32 px (chosen from the images: their median shorter side is 20 px)" in result.stderr
    assert "for 0.5 min or 1 steps" in result.stderr
    mixed = CliRunner().invoke(main, ["build", str(image_dir), "--index", str(tmp_path / "other"), "--model",
                                      str(dim_checkpoint), "--train-minutes", "1", "--image-size", "64"])
    assert mixed.exit_code != 0
    assert "--train-minutes, --image-size set the training of a model: leave them out with --model" in mixed.output
