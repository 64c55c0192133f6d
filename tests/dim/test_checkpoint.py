"""DIM's checkpoints loaded back: the whole run, the encoder as features, directly and through the registry."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

import dim
from dim.checkpoint import KINDS, load_run
from dim.config import TrainConfig
from dim.core.atomic import atomic_save
from dim.core.checkpoint import make_checkpoint
from dim.core.features import FeatureExtractor
from dim.core.registry import load_feature_extractor
from dim.models import FeatureHead, build_model
from dim.objective import DeepInfoMax


def save_run(folder: Path, channels: int = 1, image_size: int = 28, **settings) -> DeepInfoMax:
    """A DIM checkpoint of an untrained model, as ``dim train`` lays it out."""
    config = TrainConfig(critic_hidden=16, **settings).resolved()
    model = build_model(config, channels, image_size)
    state = {"epoch": 0, "batch": 0, "encoder_config": model.encoder.config(), "classes": ["a", "b"]}
    checkpoint = make_checkpoint(KINDS[0], dataclasses.asdict(config), 3, {"model": model}, {}, [], state)
    atomic_save(checkpoint, folder / "checkpoint.pt")
    return model


def test_load_run_rebuilds_the_whole_model_with_its_facts(tmp_path):
    saved = save_run(tmp_path, 3, 32, preset="paper")
    run = load_run(tmp_path)
    assert isinstance(run.model, DeepInfoMax) and not run.model.training
    assert (run.step, run.classes, run.kind, run.run_dir) == (3, ["a", "b"], "dim", tmp_path)
    assert run.config.preset == "paper" and run.config.critic_hidden == 16
    for name, value in saved.state_dict().items():
        assert torch.equal(run.model.state_dict()[name], value), name


def test_load_features_returns_a_feature_extractor(tmp_path):
    model = save_run(tmp_path)
    extractor = dim.load_features(tmp_path, feature="fc")
    assert isinstance(extractor, FeatureExtractor) and not extractor.training
    assert (extractor.image_size, extractor.channels, extractor.feature_dim) == (28, 1, 1024)
    images = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    reference = FeatureHead(model.encoder.eval(), "fc", "fp32")
    with torch.no_grad():
        assert torch.allclose(extractor(images), reference(images.float() / 127.5 - 1), atol=1e-2)


def test_load_features_refuses_other_checkpoints(tmp_path):
    atomic_save(make_checkpoint("infogan", {}, 0, {}, {}, []), tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="'infogan' checkpoint, but a 'dim' checkpoint is needed"):
        dim.load_features(tmp_path)
    atomic_save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a checkpoint written by this toolkit"):
        dim.load_features(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        dim.load_features(tmp_path / "missing")
    with pytest.raises(ValueError, match="unknown feature 'y'"):
        dim.load_features(tmp_path, feature="y")


def test_dim_runs_load_through_the_registry_with_their_options(tmp_path):
    save_run(tmp_path, z_dim=8)
    extractor = load_feature_extractor(tmp_path, device="cpu")  # the "dim" entry point: the code z
    assert (extractor.name, extractor.feature_dim) == ("dim:z", 8)
    assert extractor.source == str(tmp_path / "checkpoint.pt")
    assert load_feature_extractor(tmp_path, device="cpu", feature="fc").feature_dim == 1024
    with pytest.raises(ValueError, match="takes no option trunk .*its options are feature"):
        load_feature_extractor(tmp_path, device="cpu", trunk="d")
