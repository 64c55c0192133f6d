"""`dim.embed.embed`: any registered model family, a named split in memory or a folder streamed from its files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dim.core import registry
from dim.core.atomic import atomic_save
from dim.core.checkpoint import make_checkpoint
from dim.core.features import FeatureExtractor
from dim.embed import embed


@pytest.fixture
def toy_run(tmp_path, monkeypatch):
    """A checkpoint of kind "toy" whose features are each image's mean RGB, registered for this test."""
    monkeypatch.setattr(registry, "_registered", {})
    network = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 3))
    with torch.no_grad():  # the identity: (B, 3, H, W) -> (B, 3) mean colours
        network[2].weight.copy_(torch.eye(3))
        network[2].bias.zero_()
    registry.register_feature_loader(
        "toy", lambda path, device: FeatureExtractor(network, image_size=16, channels=3, feature_dim=3, name="toy")
    )
    atomic_save(make_checkpoint("toy", {}, 0, {"model": network}, {}, []), tmp_path / "checkpoint.pt")
    return tmp_path


def test_another_kind_embeds_through_its_loader(toy_run, tmp_path):
    result = embed(toy_run, "shapes", tmp_path / "toy.npy", device="cpu", progress=False)
    features = np.load(result.features_path)
    assert features.shape == (2000, 3) and result.feature_dim == 3  # the shapes test split, mean RGB in [-1, 1]
    assert features.min() >= -1 and features.max() <= 1 and features.std(axis=0).min() > 0
    header = result.csv_path.read_text().splitlines()[0]
    assert header == "filenames,embedding_0,embedding_1,embedding_2,labels"


def test_a_dim_feature_is_refused_for_another_kind(toy_run, tmp_path):
    with pytest.raises(ValueError, match="'toy' checkpoint, whose feature loader takes no option feature"):
        embed(toy_run, "shapes", tmp_path / "toy.npy", feature="fc", device="cpu", progress=False)


def test_a_folder_is_streamed_and_unreadable_files_are_listed(toy_run, tmp_path):
    from PIL import Image

    folder = tmp_path / "pictures"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (20, 10), (255, 0, 0)).save(folder / "red.png")
    Image.new("RGB", (10, 20), (0, 0, 255)).save(folder / "sub" / "blue.jpg")
    (folder / "broken.png").write_bytes(b"not a png")
    result = embed(toy_run, folder, tmp_path / "out" / "pictures.npy", device="cpu", num_workers=0, progress=False)
    assert result.count == 2 and [path for path, _ in result.skipped] == ["broken.png"]
    features = np.load(result.features_path)  # the toy loader's mean colours in [-1, 1]
    np.testing.assert_allclose(features[0], [1, -1, -1], atol=0.02)
    rows = [line.split(",") for line in result.csv_path.read_text().splitlines()[1:]]
    assert [row[0] for row in rows] == ["red.png", "sub/blue.jpg"] and [row[-1] for row in rows] == ["-1", "-1"]
    np.testing.assert_allclose(np.array([row[1:4] for row in rows], dtype=np.float32), features, atol=1e-6)
