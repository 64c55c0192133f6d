"""Checkpoint kinds and their feature loaders: an O-GAN run is a search model, its feature E(x)."""

from __future__ import annotations

import pytest
import torch

from dim.core.images import normalize_images
from dim.core.registry import feature_loader, feature_loader_kinds
from infogan import load_encoder, load_feature_extractor
from infogan.checkpoint import load_run
from retrieval.models import fingerprint, load_model
from tests.infogan.conftest import OGAN_NOISE_DIM, TINY_IMAGE_SIZE


def test_the_ogan_kind_is_registered_through_the_entry_points():
    assert {"infogan", "ogan"} <= set(feature_loader_kinds())
    assert feature_loader("ogan") is load_encoder


def test_dim_search_loads_an_ogan_run_as_its_encoding(ogan_run):
    model = load_model(ogan_run, device="cpu")  # what dim-search build and dim embed call
    assert (model.name, model.feature_dim, model.image_size, model.channels) == (
        "ogan:encoding", OGAN_NOISE_DIM, TINY_IMAGE_SIZE, 3
    )
    assert not model.training and model.source == str(ogan_run / "checkpoint.pt")
    images = torch.randint(0, 256, (5, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE), dtype=torch.uint8)
    features = model(images)
    assert features.shape == (5, OGAN_NOISE_DIM)
    trained = load_run(ogan_run)
    torch.testing.assert_close(features, trained.model.encode(normalize_images(images)))  # E(x), not D's trunk
    scores, _ = trained.model.discriminate(normalize_images(images))
    torch.testing.assert_close(features.mean(dim=1), scores)  # whose mean is the real/fake score
    assert fingerprint(model).name == "ogan:encoding"


def test_each_kind_refuses_the_others_loader(ogan_run, shapes_run):
    with pytest.raises(ValueError, match="O-GAN run: its features are the encoding E"):
        load_feature_extractor(ogan_run)
    with pytest.raises(ValueError, match="InfoGAN run, not an O-GAN one"):
        load_encoder(shapes_run)
