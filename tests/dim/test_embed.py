"""`dim.embed.embed` with a checkpoint of another model family, loaded through the registry."""

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
    with pytest.raises(ValueError, match="--feature fc picks a DIM encoder's features; .* is a 'toy' checkpoint"):
        embed(toy_run, "shapes", tmp_path / "toy.npy", feature="fc", device="cpu", progress=False)
