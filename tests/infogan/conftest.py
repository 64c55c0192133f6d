"""Shared fixtures: small configs and trainers, and one short offline run of each objective on ``shapes``.

Every run uses 8x8 images, the smallest side the paper's networks take: a 1.5 M-parameter model whose
checkpoint (with Adam's state) is ~18 MB, where 32x32 gives 17 M parameters and ~200 MB.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import dim.core.metrics
from infogan.cli import main
from infogan.config import TrainConfig
from infogan.train import Trainer


@pytest.fixture(autouse=True)
def _no_curves(monkeypatch):
    """Skip drawing ``curves.png`` at the end of each InfoGAN run (matplotlib's layout takes seconds per run).

    The drawing is :mod:`dim.core.metrics`' and is tested with it (``tests/dim/core/test_metrics.py``). Per
    test, not per session: a test process runs other directories' tests after these, and they draw.
    """
    monkeypatch.setattr(dim.core.metrics, "plot_curves", lambda metrics_csv, out: None)


@pytest.fixture(autouse=True)
def _few_threads():
    """Keep each test on one core: the test machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY_IMAGE_SIZE = 8  # the smallest side the networks take (a multiple of 4, at least 8)


@pytest.fixture
def make_config():
    """Factory of configs: ``shapes`` (generated offline) at 8x8, the paper's objective, batch 8, CPU.

    Four iterations, every step logged, samples and checkpoints every two steps; ``overrides`` win.
    """

    def make(**overrides) -> TrainConfig:
        values = {"dataset": "shapes", "image_size": TINY_IMAGE_SIZE, "preset": "paper", "batch_size": 8,
                  "iterations": 4, "device": "cpu", "log_every": 1, "sample_every": 2, "checkpoint_every": 2}
        return TrainConfig(**{**values, **overrides})

    return make


@pytest.fixture
def build_trainer(tmp_path, make_config):
    """Factory of trainers on :func:`make_config`'s settings, each in its own run directory under ``tmp_path``.

    ``out`` overrides the directory; every trainer built is closed after the test.
    """
    trainers: list[Trainer] = []

    def make(**overrides) -> Trainer:
        out = str(tmp_path / f"run{len(trainers)}")
        trainers.append(Trainer(make_config(**{"out": out, **overrides}), progress=False))
        return trainers[-1]

    yield make
    for trainer in trainers:
        trainer.close()


def _train_on_one_thread(args: list[str], run_dir: Path) -> Path:
    """Run ``infogan`` with ``args`` on one torch thread (restored afterwards); the run directory."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(main, args)
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return run_dir


@pytest.fixture(scope="session")
def shapes_run(tmp_path_factory) -> Path:
    """``infogan train shapes --iterations 5 --image-size 8`` (colour, generated offline) via the CLI."""
    run_dir = tmp_path_factory.mktemp("infogan") / "run"
    args = ["train", "shapes", "--out", str(run_dir), "--iterations", "5", "--batch-size", "8", "--device", "cpu",
            "--image-size", str(TINY_IMAGE_SIZE), "--log-every", "2", "--sample-every", "5", "--no-progress"]
    return _train_on_one_thread(args, run_dir)


OGAN_NOISE_DIM = 16  # the size of E(x) in the O-GAN test run


@pytest.fixture(scope="session")
def ogan_run(tmp_path_factory) -> Path:
    """``infogan train shapes --objective ogan --iterations 4 --image-size 8 --noise-dim 16`` via the CLI."""
    run_dir = tmp_path_factory.mktemp("ogan") / "run"
    args = ["train", "shapes", "--objective", "ogan", "--out", str(run_dir), "--iterations", "4", "--batch-size", "8",
            "--device", "cpu", "--image-size", str(TINY_IMAGE_SIZE), "--noise-dim", str(OGAN_NOISE_DIM),
            "--log-every", "2", "--sample-every", "4", "--no-progress"]
    return _train_on_one_thread(args, run_dir)
