"""The ``infogan`` commands end to end on the offline ``shapes`` dataset, and the feature extractor."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner
from PIL import Image

from dim.core.features import FeatureExtractor
from infogan import load_feature_extractor
from infogan.cli import main


def test_train_leaves_a_complete_run_directory(shapes_run):
    config = json.loads((shapes_run / "config.json").read_text())
    assert config["dataset"] == "shapes" and config["image_size"] == 32 and config["channels"] == 3
    assert (shapes_run / "checkpoint.pt").is_file()
    assert (shapes_run / "metrics.csv").read_text().startswith("step,d_loss,g_loss")
    assert [p.name for p in (shapes_run / "samples").glob("*.png")] == ["step_000005.png"]


def test_eval_prints_json_last(shapes_run):
    result = CliRunner().invoke(main, ["eval", str(shapes_run), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert "categorical accuracy" in result.output
    summary = json.loads(lines[-1])
    assert {"cat_accuracy", "mapping", "dataset", "iterations"} <= set(summary)
    assert summary["iterations"] == 5


def test_sample_writes_a_traversal_png(shapes_run, tmp_path):
    out = tmp_path / "c2.png"
    args = ["sample", str(shapes_run), "--vary", "c2", "--range", "2", "--out", str(out), "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    width, height = Image.open(out).size
    assert (width, height) == (10 * 34 + 2, 10 * 34 + 2)  # 10x10 images of 32 px with 2 px padding


def test_sample_rejects_an_unknown_code(shapes_run, tmp_path):
    result = CliRunner().invoke(main, ["sample", str(shapes_run), "--vary", "c9", "--out", str(tmp_path / "x.png")])
    assert result.exit_code != 0 and "c1, c2, c3" in result.output


def test_train_reports_a_bad_dataset_clearly(tmp_path):
    result = CliRunner().invoke(main, ["train", "no-such-dataset", "--out", str(tmp_path / "run")])
    assert result.exit_code != 0 and "unknown dataset" in result.output


def test_train_passes_the_extra_terms_on(tmp_path):
    run_dir = tmp_path / "run"
    args = ["train", "shapes", "--out", str(run_dir), "--iterations", "2", "--batch-size", "4", "--device", "cpu",
            "--log-every", "1", "--no-progress", "--lambda-invariance", "1", "--lambda-iic", "0.5"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["lambda_invariance"], config["lambda_iic"]) == (1.0, 0.5)
    header = (run_dir / "metrics.csv").read_text().splitlines()[0]
    assert header.endswith("invariance_loss,iic_mi,it_per_s")


def test_help_explains_the_options():
    result = CliRunner().invoke(main, ["train", "--help"])
    assert result.exit_code == 0 and "--separate-q" in result.output and "--lambda-info" in result.output


def test_feature_extractor(shapes_run):
    extractor = load_feature_extractor(shapes_run)
    assert isinstance(extractor, FeatureExtractor) and not extractor.training
    assert (extractor.image_size, extractor.channels, extractor.feature_dim) == (32, 3, 1024)
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    features = extractor(images)
    assert features.shape == (5, extractor.feature_dim)
    assert extractor.embed([Image.new("RGB", (40, 30), "red")]).shape == (1, 1024)
