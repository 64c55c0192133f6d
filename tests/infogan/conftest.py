"""Shared fixtures: tiny synthetic data, small configs and one short offline run on ``shapes``.

Runs that load a dataset use 8x8 images, the smallest side the paper's networks take: a 1.5 M-parameter
model whose checkpoint (with Adam's state) is ~18 MB, where 32x32 gives 17 M parameters and ~200 MB.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from infogan.cli import main
from infogan.config import TrainConfig


@pytest.fixture(autouse=True)
def _few_threads():
    """Keep each test on one core: the test machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def grey_images() -> torch.Tensor:
    """64 random uint8 28x28 grey images, ``(64, 1, 28, 28)``."""
    return torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


TINY_IMAGE_SIZE = 8  # the smallest side the networks take (a multiple of 4, at least 8)


@pytest.fixture
def tiny_grey_images() -> torch.Tensor:
    """64 random uint8 8x8 grey images, ``(64, 1, 8, 8)``: a ~1.5 M-parameter model instead of ~13 M at 28x28."""
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (64, 1, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE), dtype=torch.uint8, generator=generator)


@pytest.fixture
def make_config():
    """Factory of configs: the paper's networks and objective (preset paper), a small batch, every step logged, CPU.

    A config that names a ``dataset`` loads it at 8x8 unless ``image_size`` is given (configs for
    :class:`~infogan.train.Trainer` take the size of the images they are handed instead).
    """

    def make(**overrides) -> TrainConfig:
        values = {"preset": "paper", "batch_size": 8, "iterations": 4, "device": "cpu", "log_every": 1, "sample_every": 2,
                  "checkpoint_every": 2}
        if "dataset" in overrides:
            values["image_size"] = TINY_IMAGE_SIZE
        return TrainConfig(**{**values, **overrides})

    return make


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
