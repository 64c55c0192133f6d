"""Checkpoint kinds, loading a run back, and the one feature loader: D's trunk for InfoGAN runs, E(x) for O-GAN runs."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from dim.core.features import FeatureExtractor
from dim.core.images import image_to_uint8, normalize_images
from dim.core.registry import feature_loader, feature_loader_kinds
from dim.core.runs import TrainedRun
from infogan.checkpoint import KINDS, load_features, load_run
from infogan.config import OBJECTIVES
from infogan.models import FEATURE_DIM, OGAN, InfoGAN
from retrieval.models import fingerprint, load_model
from tests.infogan.conftest import OGAN_NOISE_DIM, TINY_IMAGE_SIZE


def test_both_kinds_are_registered_to_the_one_loader():
    assert KINDS == tuple(OBJECTIVES) == ("infogan", "ogan")
    assert set(KINDS) <= set(feature_loader_kinds())
    assert all(feature_loader(kind) is load_features for kind in KINDS)


@pytest.mark.parametrize(
    "fixture, kind, model_class, steps", [("shapes_run", "infogan", InfoGAN, 5), ("ogan_run", "ogan", OGAN, 4)]
)
def test_load_run_gives_the_model_in_eval_mode_and_the_runs_facts(request, fixture, kind, model_class, steps):
    run_dir = request.getfixturevalue(fixture)
    run = load_run(run_dir)
    assert isinstance(run, TrainedRun) and isinstance(run.model, model_class) and not run.model.training
    assert (run.kind, run.config.objective, run.path, run.run_dir) == (kind, kind, run_dir / "checkpoint.pt", run_dir)
    assert run.classes == ["circle", "square", "triangle"] and run.step == steps
    assert run.config.noise is not None  # resolved


def test_an_infogan_runs_features_are_ds_trunk(shapes_run):
    extractor = load_features(shapes_run)
    assert isinstance(extractor, FeatureExtractor) and not extractor.training
    assert (extractor.name, extractor.feature_dim, extractor.image_size, extractor.channels) == (
        "infogan:d-trunk", FEATURE_DIM, TINY_IMAGE_SIZE, 3
    )
    images = torch.randint(0, 256, (5, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE), dtype=torch.uint8)
    model = load_run(shapes_run).model
    _, trunk_features = model.discriminate(normalize_images(images))
    torch.testing.assert_close(extractor(images), trunk_features)  # the features D's and Q's heads read
    q = load_features(shapes_run, trunk="q")
    assert q.name == "infogan:q-trunk"  # Q shares D's trunk in this run
    torch.testing.assert_close(q(images), trunk_features)
    red = Image.new("RGB", (40, 30), "red")
    embedded = extractor.embed([red])  # resized and centre-cropped to 8x8 like any input
    torch.testing.assert_close(embedded, extractor(image_to_uint8(red, TINY_IMAGE_SIZE, 3)[None]))


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


def test_the_trunk_option_is_checked_and_refused_for_ogan_runs(ogan_run, shapes_run):
    with pytest.raises(ValueError, match="O-GAN run: its features are the encoding E\\(x\\).*leave trunk out"):
        load_features(ogan_run, trunk="d")
    with pytest.raises(ValueError, match="unknown trunk 'g'; choose one of d, q"):
        load_features(shapes_run, trunk="g")
