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


class _CentredThumbnail(nn.Module):
    """``(B, 3, 32, 32)`` -> ``(B, 192)``: an 8x8 average-pooled thumbnail minus its mean."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(8)
        self.anchor = nn.Parameter(torch.zeros(1), requires_grad=False)  # gives the extractor a device

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.pool(images).flatten(1)
        return features - features.mean(dim=1, keepdim=True) + self.anchor


def thumbnail_model() -> FeatureExtractor:
    """A test-only feature extractor whose features are a downsampled, centred thumbnail.

    Not a learned model: it stands in for a trained encoder where a test needs
    features that put a resized or re-encoded copy next to its original and
    unrelated images far apart (the tiny random conv net gives no such guarantee).
    """
    return FeatureExtractor(_CentredThumbnail(), image_size=32, channels=3, feature_dim=192, name="test:thumbnail")


def smooth_image(rng: np.random.Generator, size: int = 64) -> Image.Image:
    """An RGB image of smooth random blobs: a 4x4 grid of random colours, upsampled bicubically."""
    cells = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    return cells.resize((size, size), Image.Resampling.BICUBIC)


PLANTED_DUPLICATES = {"a/photo00.png": "copies/photo00-small.png", "a/photo03.png": "copies/photo03.jpg"}


@pytest.fixture
def duplicates_dir(tmp_path: Path) -> Path:
    """12 unrelated smooth images in ``a/`` and ``b/``, plus two planted near-duplicates in ``copies/``.

    ``copies/photo00-small.png`` is ``a/photo00.png`` resized to 40x40;
    ``copies/photo03.jpg`` is ``a/photo03.png`` re-encoded as a JPEG at quality 70.
    """
    folder = tmp_path / "photos"
    rng = np.random.default_rng(3)
    for number in range(12):
        path = folder / ("a" if number < 6 else "b") / f"photo{number:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        smooth_image(rng).save(path)
    (folder / "copies").mkdir()
    with Image.open(folder / "a/photo00.png") as original:
        original.resize((40, 40), Image.Resampling.LANCZOS).save(folder / PLANTED_DUPLICATES["a/photo00.png"])
    with Image.open(folder / "a/photo03.png") as original:
        original.save(folder / PLANTED_DUPLICATES["a/photo03.png"], quality=70)
    return folder
