"""DIM's checkpoints loaded back: the encoder as a feature extractor, directly and through the registry."""

from __future__ import annotations

import pytest
import torch

import dim
from dim.core.atomic import atomic_save
from dim.core.checkpoint import make_checkpoint
from dim.core.features import FeatureExtractor
from dim.core.registry import load_feature_extractor
from dim.models import Encoder, FeatureHead
from dim.objective import DeepInfoMax


def test_load_encoder_returns_a_feature_extractor(tmp_path):
    model = DeepInfoMax(Encoder(channels=1, image_size=28), critic_hidden=16)
    state = {"encoder_config": model.encoder.config()}
    atomic_save(make_checkpoint("dim", {}, 0, {"model": model}, {}, [], state), tmp_path / "checkpoint.pt")
    extractor = dim.load_encoder(tmp_path, feature="fc")
    assert isinstance(extractor, FeatureExtractor) and not extractor.training
    assert (extractor.image_size, extractor.channels, extractor.feature_dim) == (28, 1, 1024)
    images = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    reference = FeatureHead(model.encoder.eval(), "fc")
    with torch.no_grad():
        assert torch.allclose(extractor(images), reference(images.float() / 127.5 - 1), atol=1e-5)


def test_load_encoder_refuses_other_checkpoints(tmp_path):
    atomic_save(make_checkpoint("infogan", {}, 0, {}, {}, []), tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="'infogan' checkpoint, but a 'dim' checkpoint is needed"):
        dim.load_encoder(tmp_path)
    atomic_save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a checkpoint written by this toolkit"):
        dim.load_encoder(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        dim.load_encoder(tmp_path / "missing")


def test_dim_runs_load_through_the_registry(tmp_path):
    model = DeepInfoMax(Encoder(channels=1, image_size=28, z_dim=8), critic_hidden=16)
    state = {"encoder_config": model.encoder.config()}
    atomic_save(make_checkpoint("dim", {}, 0, {"model": model}, {}, [], state), tmp_path / "checkpoint.pt")
    extractor = load_feature_extractor(tmp_path, device="cpu")  # the "dim" entry point: the code z
    assert (extractor.name, extractor.feature_dim) == ("dim:z", 8)
    assert extractor.source == str(tmp_path / "checkpoint.pt")
