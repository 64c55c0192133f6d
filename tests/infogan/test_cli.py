"""The ``infogan`` commands end to end on the offline ``shapes`` dataset."""

from __future__ import annotations

import json

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image

from infogan.checkpoint import load_run
from infogan.cli import main
from tests.infogan.conftest import TINY_IMAGE_SIZE


def test_train_leaves_a_complete_run_directory(shapes_run):
    config = json.loads((shapes_run / "config.json").read_text())
    assert config["dataset"] == "shapes" and config["image_size"] == TINY_IMAGE_SIZE and config["channels"] == 3
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
    side = 10 * (TINY_IMAGE_SIZE + 2) + 2  # 10x10 images of 8 px with 2 px padding
    assert Image.open(out).size == (side, side)


def test_sample_rejects_an_unknown_code(shapes_run, tmp_path):
    result = CliRunner().invoke(main, ["sample", str(shapes_run), "--vary", "c9", "--out", str(tmp_path / "x.png")])
    assert result.exit_code != 0 and "c1, c2, c3" in result.output


def test_commands_that_take_a_run_name_it_run():
    for command in ("sample", "eval"):
        result = CliRunner().invoke(main, [command, "--help"])
        assert result.exit_code == 0 and f"Usage: main {command} [OPTIONS] RUN" in result.output


def test_train_reports_a_bad_dataset_clearly(tmp_path):
    result = CliRunner().invoke(main, ["train", "no-such-dataset", "--out", str(tmp_path / "run")])
    assert result.exit_code != 0 and "unknown dataset" in result.output


def test_train_passes_the_extra_terms_and_the_q_options_on(tmp_path):
    run_dir = tmp_path / "run"
    args = ["train", "shapes", "--out", str(run_dir), "--iterations", "2", "--batch-size", "4", "--device", "cpu",
            "--image-size", str(TINY_IMAGE_SIZE), "--log-every", "1", "--no-progress", "--preset", "paper",
            "--lambda-invariance", "1", "--lambda-iic", "0.5", "--separate-q", "--lambda-info", "0.25"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["preset"], config["lambda_invariance"], config["lambda_iic"], config["lambda_info"]) == (
        "paper", 1.0, 0.5, 0.25  # given explicitly: they win over the preset's zeros
    )
    header = (run_dir / "metrics.csv").read_text().splitlines()[0]
    assert header.endswith("invariance_loss,iic_mi,it_per_s")
    run = load_run(run_dir)  # --separate-q: the saved model has a trunk of Q's own, next to D's
    assert run.config.separate_q and run.model.q_trunk is not None
    assert any(name.startswith("q_trunk.") for name in run.model.state_dict())


def test_eval_of_an_ogan_run_reports_knn_top1(ogan_run):
    result = CliRunner().invoke(main, ["eval", str(ogan_run), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "kNN top-1 of E(x) (16-d; k=200, T=0.1)" in result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert 0 < summary["knn_top1"] <= 1 and summary["iterations"] == 4


def test_an_ogan_run_directory(ogan_run):
    config = json.loads((ogan_run / "config.json").read_text())
    assert (config["objective"], config["noise"], config["categorical"], config["continuous"]) == ("ogan", "normal", [], 0)
    assert (ogan_run / "metrics.csv").read_text().startswith("step,d_loss,g_loss,corr,it_per_s")
    side = 10 * (TINY_IMAGE_SIZE + 2) + 2  # 10x10 samples of fixed noise
    assert Image.open(ogan_run / "samples" / "step_000004.png").size == (side, side)
    assert Image.open(ogan_run / "reconstructions.png").size == (side, 2 * (TINY_IMAGE_SIZE + 2) + 2)  # 10 test images


def test_sample_reconstructs_image_files(ogan_run, tmp_path):
    generator = torch.Generator().manual_seed(0)
    files = []
    for i in range(3):
        pixels = torch.randint(0, 256, (TINY_IMAGE_SIZE, TINY_IMAGE_SIZE, 3), dtype=torch.uint8, generator=generator)
        files.append(tmp_path / f"image{i}.png")
        Image.fromarray(pixels.numpy()).save(files[-1])
    out = tmp_path / "reconstructions.png"
    args = ["sample", str(ogan_run), "--reconstruct", *map(str, files), "--out", str(out), "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    picture = np.asarray(Image.open(out).convert("RGB"))
    assert picture.shape == (2 * (TINY_IMAGE_SIZE + 2) + 2, 3 * (TINY_IMAGE_SIZE + 2) + 2, 3)
    for i, file in enumerate(files):  # the top row is the files, pixel for pixel
        left = 2 + i * (TINY_IMAGE_SIZE + 2)
        assert np.array_equal(picture[2 : 2 + TINY_IMAGE_SIZE, left : left + TINY_IMAGE_SIZE],
                              np.asarray(Image.open(file)))


def test_sample_explains_which_picture_suits_which_run(ogan_run, shapes_run, tmp_path):
    result = CliRunner().invoke(main, ["sample", str(ogan_run), "--out", str(tmp_path / "x.png")])
    assert result.exit_code != 0 and "no codes to vary" in result.output and "--reconstruct" in result.output
    Image.new("RGB", (8, 8)).save(tmp_path / "image.png")
    args = ["sample", str(shapes_run), "--reconstruct", str(tmp_path / "image.png"), "--out", str(tmp_path / "x.png")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and "reconstructions need an O-GAN run" in result.output


def test_train_refuses_codes_for_ogan(tmp_path):
    args = ["train", "shapes", "--objective", "ogan", "--categorical", "10", "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and "drop --categorical" in result.output
    result = CliRunner().invoke(main, ["train", "shapes", "--objective", "vae"])
    assert result.exit_code != 0 and "'infogan', 'ogan'" in result.output
