"""The Ray engine: the local engine's embeddings, from Ray Data tasks and actors on a local Ray of two CPUs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dim.core.embedding import embed_images
from dim.core.files import find_images
from dim.core.ray_embedding import ENGINES, check_engine, embed_images_ray
from tests.retrieval.conftest import random_image, tiny_model, write_images


@pytest.fixture
def folder(tmp_path: Path) -> list[Path]:
    """Ten small PNGs and JPEGs plus a zero-byte file, a text file and a truncated JPEG, in name order."""
    write_images(tmp_path, 10, seed=5)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.png").write_text("not an image\n")
    random_image(np.random.default_rng(2), (48, 40)).save(tmp_path / "whole.jpg", quality=90)
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 3])
    return find_images(tmp_path)


@pytest.mark.slow  # about 20 s with Ray's start; the default suite's Ray test is tests/retrieval/test_ray_build.py
def test_ray_engine_gives_the_local_embeddings_and_skipped_report(local_ray, folder: list[Path]) -> None:
    model = tiny_model(seed=1)
    local = embed_images(model, folder, batch_size=4, num_workers=0)
    remote = embed_images_ray(model, folder, batch_size=4, actors=2)  # several blocks, finishing in any order

    assert len(local.skipped) == 3 and len(local.positions) == len(folder) - 3
    assert remote.positions.tolist() == local.positions.tolist()
    assert remote.skipped == local.skipped
    assert remote.vectors.dtype == np.float32 and remote.vectors.shape == local.vectors.shape
    np.testing.assert_allclose(remote.vectors, local.vectors, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(remote.vectors, axis=1), 1.0, atol=1e-5)
    assert local_ray.is_initialized()  # a connection made by the caller is kept


@pytest.mark.slow
def test_ray_engine_keeps_raw_features(local_ray, folder: list[Path]) -> None:
    model = tiny_model(seed=2)
    raw = embed_images_ray(model, folder, batch_size=32, normalize=False)  # one batch, Ray's autoscaling pool
    np.testing.assert_allclose(raw.vectors, embed_images(model, folder, num_workers=0, normalize=False).vectors,
                               atol=1e-5)


OWN_RAY_SCRIPT = """
import sys
import numpy as np
import ray
from dim.core.embedding import embed_images
from dim.core.files import find_images
from dim.core.ray_embedding import embed_images_ray
from tests.retrieval.conftest import tiny_model
paths, model = find_images(sys.argv[1]), tiny_model(seed=3)
remote, local = embed_images_ray(model, paths, batch_size=4), embed_images(model, paths, num_workers=0)
assert remote.skipped == local.skipped and remote.positions.tolist() == local.positions.tolist()
np.testing.assert_allclose(remote.vectors, local.vectors, atol=1e-5)
assert not ray.is_initialized(), "the Ray it started is shut down again"
print("same embeddings")
"""


@pytest.mark.slow
def test_without_a_connection_it_starts_and_stops_its_own_ray(folder: list[Path], tmp_path: Path) -> None:
    """The path of `dim-search build --engine ray` without --address, in a process that never called ray.init."""
    pytest.importorskip("ray", reason="the Ray engine's tests need pip install 'dim-toolkit[ray]'")
    root = Path(__file__).resolve().parents[3]
    result = subprocess.run([sys.executable, "-c", OWN_RAY_SCRIPT, str(tmp_path)], check=False, cwd=root,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "same embeddings" in result.stdout, result.stderr[-3000:]


def test_nothing_to_embed_needs_no_pipeline() -> None:
    pytest.importorskip("ray", reason="the Ray engine's tests need pip install 'dim-toolkit[ray]'")
    empty = embed_images_ray(tiny_model(), [])
    assert empty.vectors.shape == (0, 32) and empty.positions.shape == (0,) and empty.skipped == []


def test_a_missing_ray_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails, as without the extra
    with pytest.raises(ImportError, match=r"pip install 'dim-toolkit\[ray\]'"):
        check_engine("ray")
    with pytest.raises(ImportError, match=r"pip install 'dim-toolkit\[ray\]'"):
        embed_images_ray(tiny_model(), ["any.png"])
    check_engine("local")  # the default engine needs no Ray


def test_engines_and_arguments_are_checked() -> None:
    assert ENGINES == ("local", "ray")
    with pytest.raises(ValueError, match=r"engine must be one of \['local', 'ray'\], got 'spark'"):
        check_engine("spark")
    with pytest.raises(ValueError, match=r"address head:6379 \(--address\) is where a Ray cluster runs: use it with "
                                         r"engine='ray' \(--engine ray\)"):
        check_engine("local", "head:6379")
    with pytest.raises(ValueError, match=r"leave num_workers \(--num-workers\) out"):
        check_engine("ray", num_workers=2)
    with pytest.raises(ValueError, match="actors must be >= 1"):
        embed_images_ray(tiny_model(), ["any.png"], actors=0)
    with pytest.raises(ValueError, match="batch_size must be positive"):
        embed_images_ray(tiny_model(), ["any.png"], batch_size=0)
