"""The feature-loader and folder-trainer registries: a new model family plugs in without touching search."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from dim.core import registry
from dim.core.atomic import atomic_save
from dim.core.checkpoint import make_checkpoint
from dim.core.features import FeatureExtractor


def test_the_installed_products_declare_their_loaders():
    assert {"dim", "infogan"} <= set(registry.feature_loader_kinds())


def test_a_registered_kind_loads_through_the_registry_and_search(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_registered", {})
    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5))
    seen = {}

    def load_toy(path, device):
        seen["args"] = (path, device)
        checkpoint = torch.load(path, weights_only=True)
        network.load_state_dict(checkpoint["modules"]["model"])
        return FeatureExtractor(network, image_size=4, channels=3, feature_dim=5, name="toy:out")

    registry.register_feature_loader("toy", load_toy)
    atomic_save(make_checkpoint("toy", {}, 0, {"model": network}, {}, []), tmp_path / "checkpoint.pt")
    from retrieval.models import (
        load_model,  # search asks the registry; it knows no "toy"
    )

    extractor = load_model(tmp_path, device="cpu")
    assert seen["args"] == (tmp_path / "checkpoint.pt", torch.device("cpu"))
    assert extractor.name == "toy:out" and not extractor.training
    assert extractor.source == str(tmp_path / "checkpoint.pt")  # filled in for the index fingerprint
    assert extractor(torch.zeros(2, 3, 4, 4, dtype=torch.uint8)).shape == (2, 5)


def test_a_kind_without_loader_is_refused_with_the_known_kinds(tmp_path):
    atomic_save(make_checkpoint("mystery", {}, 0, {}, {}, []), tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"'mystery' checkpoint, but one of \[.*'dim'.*'infogan'.*\] is needed"):
        registry.load_feature_extractor(tmp_path, device="cpu")
    with pytest.raises(ValueError, match="no feature loader for 'mystery' checkpoints.*dim_toolkit.feature_loaders"):
        registry.feature_loader("mystery")
    with pytest.raises(ValueError, match="non-empty"):
        registry.register_feature_loader("", lambda path, device: None)


def test_the_installed_dim_trainer_is_found_by_kind():
    from dim.train import train_folder

    assert "dim" in registry.folder_trainer_kinds()
    assert registry.folder_trainer("dim") is train_folder


def test_search_trains_through_the_registry_by_kind_name(tmp_path, monkeypatch):
    from retrieval.index import TRAINER_KIND, train_model

    monkeypatch.setattr(registry, "_registered_trainers", {})
    calls = []

    def toy_trainer(folder, out, **settings):
        calls.append((folder, out, settings))
        out.mkdir()
        (out / "config.json").write_text("{}")
        return out

    registry.register_folder_trainer(TRAINER_KIND, toy_trainer)  # overrides the installed entry point
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "photos" / "a.png")
    run_dir = train_model(tmp_path / "photos", tmp_path / "index", minutes=0.5, max_steps=3, image_size=64)
    assert run_dir == tmp_path / "index" / "model"
    assert calls == [(tmp_path / "photos", run_dir, {"minutes": 0.5, "max_steps": 3, "image_size": 64,
                                                     "device": "auto", "progress": False})]
    with pytest.raises(FileExistsError, match="holds an unfinished training run: train again with --overwrite"):
        train_model(tmp_path / "photos", tmp_path / "index")
    assert train_model(tmp_path / "photos", tmp_path / "index", overwrite=True) == run_dir  # trained again
    assert len(calls) == 2


def test_a_kind_without_trainer_is_refused_with_the_known_kinds(monkeypatch):
    with pytest.raises(ValueError, match=r"no folder trainer for 'mystery' models \(known kinds: .*dim.*\).*"
                                         r"'dim_toolkit.trainers'"):
        registry.folder_trainer("mystery")
    with pytest.raises(ValueError, match="non-empty"):
        registry.register_folder_trainer("", lambda folder, out, **settings: out)
