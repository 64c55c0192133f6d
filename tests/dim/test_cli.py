"""`dim train`, `dim eval` and `dim embed` end to end on the generated shapes (no files, no network)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dim.cli import main
from dim.config import PRESETS
from dim.core.checkpoint import load_checkpoint

TINY = ["--batch-size", "16", "--z-dim", "16", "--device", "cpu"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = CliRunner().invoke(main, ["train", "shapes", "--epochs", "1", "--max-steps", "3", "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    assert "kNN top-1" in result.output
    return out


def test_train_leaves_a_complete_run_directory(run_dir):
    assert {p.name for p in run_dir.iterdir()} >= {"config.json", "checkpoint.pt", "metrics.csv", "curves.png", "knn.png"}
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["dataset"], config["preset"], config["batch_size"]) == ("shapes", "best", 16)
    assert config["bound"] == PRESETS["best"]["bound"]  # filled in from the default preset
    with (run_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and rows[0]["step"] == "3"
    assert 0.0 <= float(rows[0]["knn_top1"]) <= 1.0 and float(rows[0]["images_per_s"]) > 0
    assert {"loss", "global_mi", "local_mi", "prior"} <= set(rows[0])
    assert load_checkpoint(run_dir, "dim")["step"] == 3


def test_resume_from_the_command_line(run_dir, tmp_path):
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("config.json", "checkpoint.pt", "metrics.csv"):
        (copy / name).write_bytes((run_dir / name).read_bytes())
    result = CliRunner().invoke(main, ["train", "shapes", "--out", str(copy), "--max-steps", "4", "--no-knn", "--resume"])
    assert result.exit_code == 0, result.output
    assert "step 4" in result.output
    assert load_checkpoint(copy, "dim")["step"] == 4


def test_eval_prints_json_last(run_dir):
    result = CliRunner().invoke(main, ["eval", str(run_dir), "--k", "20", "--feature", "fc", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["k"] == 20 and summary["feature"] == "fc" and summary["dataset"] == "shapes"
    assert summary["num_classes"] == 3 and 0.0 <= summary["knn_top1"] <= 1.0


def test_eval_refuses_a_non_dim_checkpoint(tmp_path):
    torch.save({"kind": "infogan"}, tmp_path / "checkpoint.pt")
    result = CliRunner().invoke(main, ["eval", str(tmp_path)])
    assert result.exit_code != 0 and "'dim' checkpoint is needed" in result.output


def test_embed_a_dataset_split(run_dir, tmp_path):
    out = tmp_path / "shapes.npy"
    result = CliRunner().invoke(main, ["embed", str(run_dir), "shapes", "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    features = np.load(out)
    with out.with_suffix(".csv").open() as handle:
        rows = list(csv.reader(handle))
    assert features.shape == (2000, 16) and len(rows) == 2001
    assert rows[0][0] == "filenames" and rows[0][-1] == "labels" and len(rows[0]) == 18
    assert rows[1][0] == "test/000000"
    assert np.allclose(np.array(rows[5][1:-1], dtype=np.float32), features[4], atol=1e-6)


def test_embed_an_image_folder_skips_unreadable_files(run_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DIM_CACHE_DIR", str(tmp_path / "cache"))
    photos = tmp_path / "photos"
    (photos / "deep").mkdir(parents=True)
    Image.new("RGB", (40, 30), "red").save(photos / "a.png")
    Image.new("L", (32, 32), 128).save(photos / "deep" / "b.jpg")
    (photos / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "photos.npy"
    result = CliRunner().invoke(main, ["embed", str(run_dir), str(photos), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    with out.with_suffix(".csv").open() as handle:
        names = [row[0] for row in csv.reader(handle)][1:]
    assert np.load(out).shape == (2, 16)
    assert sorted(names) == ["a.png", "deep/b.jpg"]
    assert "skipped 1" in result.output


def test_mi_reads_npy_npz_and_csv_and_prints_json_last(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 2))
    y = x[:, :1] + 0.5 * rng.standard_normal((300, 1))
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "pair.npz", x=x, y=y)
    np.savetxt(tmp_path / "y.csv", y, delimiter=",", header="sensor", comments="")
    fast = ["--folds", "3", "--max-steps", "20", "--no-progress", "--device", "cpu"]
    result = CliRunner().invoke(main, ["mi", str(tmp_path / "x.npy"), str(tmp_path / "y.csv"), *fast, "--json",
                                       "--plot", str(tmp_path / "curves.png")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["num_samples"] == 300 and len(summary["folds"]) == 3
    assert summary["bits"] == pytest.approx(summary["nats"] / np.log(2))
    assert set(summary["baselines"]) == {"gaussian", "ksg"}
    assert result.output.startswith("I(X; Y) = ") and (tmp_path / "curves.png").is_file()
    # The same pairs from an .npz archive, by key, give the same estimate.
    from_npz = CliRunner().invoke(main, ["mi", f"{tmp_path / 'pair.npz'}:x", f"{tmp_path / 'pair.npz'}:y", *fast,
                                         "--json"])
    assert json.loads(from_npz.output.strip().splitlines()[-1])["nats"] == pytest.approx(summary["nats"], abs=1e-6)


def test_mi_refuses_mismatched_rows_and_unknown_keys(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((300, 2)))
    np.savez(tmp_path / "y.npz", y=np.zeros(299))
    result = CliRunner().invoke(main, ["mi", str(tmp_path / "x.npy"), f"{tmp_path / 'y.npz'}:z", "--no-progress"])
    assert result.exit_code != 0 and "has no array 'z'; it holds y" in result.output
    result = CliRunner().invoke(main, ["mi", str(tmp_path / "x.npy"), str(tmp_path / "y.npz"), "--no-progress"])
    assert result.exit_code != 0 and "got 300 rows in x and 299 in y" in result.output
