"""Fixtures for the search tests: a folder of tiny generated images (with three broken files) and tiny models."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dim.core.features import FeatureExtractor

NUM_GOOD_IMAGES = 30
BAD_FILES = {"broken/empty.jpg", "broken/notes.jpg", "broken/truncated.jpg"}


def random_image(rng: np.random.Generator, size: tuple[int, int] = (20, 24)) -> Image.Image:
    """A small RGB image: a random colour gradient plus noise, different for every draw."""
    width, height = size
    start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    ramp = np.linspace(0.0, 1.0, width)[None, :, None]
    pixels = start + (end - start) * ramp + rng.normal(0, 25, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_images(folder: Path, count: int, seed: int, prefix: str = "img") -> list[Path]:
    """``count`` images in ``folder`` and a sub-folder, alternating PNG and (upper-case) JPEG."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / ("nested" if i % 3 == 0 else "") / f"{prefix}{i:03d}{'.png' if i % 2 else '.JPG'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        random_image(rng).save(path, quality=95) if path.suffix == ".JPG" else random_image(rng).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """30 readable images plus a zero-byte file, a text file named .jpg and a truncated JPEG."""
    folder = tmp_path / "images"
    write_images(folder, NUM_GOOD_IMAGES, seed=0)
    (folder / "broken").mkdir()
    (folder / "broken" / "empty.jpg").write_bytes(b"")
    (folder / "broken" / "notes.jpg").write_text("this is not an image\n")
    buffer = io.BytesIO()
    random_image(np.random.default_rng(1), (64, 64)).save(buffer, format="JPEG", quality=90)
    (folder / "broken" / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) * 2 // 5])
    (folder / "readme.txt").write_text("not an image extension: ignored, not skipped\n")
    return folder


def tiny_model(seed: int = 0) -> FeatureExtractor:
    """A small real conv net (16x16 RGB -> 32-d) wrapped as a feature extractor."""
    torch.manual_seed(seed)
    network = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),  # (B, 8, 8, 8)
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),  # (B, 8, 4, 4)
        nn.Flatten(),
        nn.Linear(128, 32),
    )
    return FeatureExtractor(network, image_size=16, channels=3, feature_dim=32, name="test:tiny").eval()


@pytest.fixture
def model() -> FeatureExtractor:
    return tiny_model(seed=0)


@pytest.fixture(scope="session")
def dim_checkpoint(tmp_path_factory) -> Path:
    """A real DIM run trained for one step on generated shapes: the model-loading path users take.

    Without the kNN evaluation: at the end it would embed all 12,000 shapes (half a minute on a CPU).
    """
    from dim.config import TrainConfig
    from dim.train import train

    config = TrainConfig(
        dataset="shapes", out=str(tmp_path_factory.mktemp("dim-run")), epochs=1, max_steps=1, batch_size=8,
        z_dim=16, critic_hidden=16, knn=False, device="cpu",
    )
    return train(config, progress=False).run_dir / "checkpoint.pt"
