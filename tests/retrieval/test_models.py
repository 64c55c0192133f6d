"""Loading models for search by checkpoint kind, refusing what is not one, and fingerprints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from retrieval.index import Index
from retrieval.models import fingerprint, load_model, weights_sha256
from tests.retrieval.conftest import tiny_model


def test_missing_paths_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_model(tmp_path / "nothing.pt", "cpu")
    with pytest.raises(FileNotFoundError, match="directory without checkpoint.pt"):
        load_model(tmp_path, "cpu")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"weights": torch.zeros(2)}, "no 'kind' entry"),
        ({"kind": "classifier"}, r"'classifier' checkpoint, but one of \[.*'dim'.*'infogan'.*\] is needed"),
        ([1, 2, 3], "no 'kind' entry"),
    ],
)
def test_foreign_checkpoints_are_refused(tmp_path: Path, content, message: str) -> None:
    path = tmp_path / "checkpoint.pt"
    torch.save(content, path)
    with pytest.raises(ValueError, match=message):
        load_model(tmp_path, "cpu")  # a run directory works like its checkpoint.pt


def test_garbage_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"\x00not a zip or pickle")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_model(path, "cpu")


def test_dim_run_directory_loads_with_fingerprint(dim_checkpoint: Path) -> None:
    model = load_model(dim_checkpoint.parent, "cpu")
    assert not model.training and model.name == "dim:z" and model.feature_dim == 16
    recorded = fingerprint(model)
    assert recorded.checkpoint == str(dim_checkpoint.resolve()) and len(recorded.checkpoint_sha256) == 64
    assert fingerprint(load_model(dim_checkpoint, "cpu")) == recorded
    assert recorded.differences(fingerprint(tiny_model())) == [
        "name", "feature_dim", "image_size", "weights_sha256"
    ]


def test_weights_hash_ignores_mode_and_memory_format() -> None:
    model = tiny_model()
    before = weights_sha256(model)
    model.train()
    model.network.to(memory_format=torch.channels_last)
    assert weights_sha256(model) == before
    with torch.no_grad():
        model.network[0].bias[0] += 1e-3
    assert weights_sha256(model) != before


@pytest.mark.slow
def test_infogan_checkpoint_builds_an_index(tmp_path: Path, image_dir: Path) -> None:
    """InfoGAN's D trunk as the model (slow: one training step writes a ~200 MB checkpoint)."""
    from infogan import TrainConfig
    from infogan.train import train

    run_dir = train(
        TrainConfig(dataset="shapes", out=str(tmp_path / "gan"), iterations=1, batch_size=4, device="cpu", log_every=1),
        progress=False,
    ).run_dir
    index = Index.build(run_dir, image_dir, tmp_path / "index", device="cpu", num_workers=0)
    assert index.manifest["model"]["name"].startswith("infogan:") and index.feature_dim == 1024
    loaded = Index.load(tmp_path / "index", device="cpu")
    top = loaded.search(image_dir / "img001.png", k=1)[0].neighbours[0]
    assert Path(top.path) == image_dir / "img001.png"
