"""``Index.build/add(engine="ray")`` and ``dim-search build/add --engine ray``: the local build's index, from Ray."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dim.core.features import FeatureExtractor
from retrieval.cli import main
from retrieval.index import Index
from tests.retrieval.conftest import BAD_FILES, NUM_GOOD_IMAGES, write_images


def neighbours(index: Index, k: int = 5) -> dict[str, list[tuple[str, float]]]:
    """Every indexed image's ``k`` nearest neighbours: path -> [(path, score)]."""
    return {record.path: [(hit.path, hit.score) for hit in index.neighbours_of(record.id, k).neighbours]
            for record in index.records}


def assert_same_index(ray_index: Index, local_index: Index) -> None:
    """The same images under the same ids, the same skipped files and reasons, the same neighbours."""
    assert [(r.id, r.path) for r in ray_index.records] == [(r.id, r.path) for r in local_index.records]
    assert ray_index.skipped == local_index.skipped
    expected = neighbours(local_index)
    for path, hits in neighbours(ray_index).items():
        assert [hit for hit, _ in hits] == [hit for hit, _ in expected[path]], path
        assert [score for _, score in hits] == pytest.approx([score for _, score in expected[path]], abs=1e-5)


def build_both(model: FeatureExtractor, image_dir: Path, tmp_path: Path) -> tuple[Index, Index]:
    """The index of ``image_dir`` built by each engine: ``(ray, local)``."""
    local = Index.build(model, image_dir, tmp_path / "local", num_workers=0)
    remote = Index.build(model, image_dir, tmp_path / "ray", engine="ray")  # Ray Data's autoscaling actor pool
    return remote, local


def test_ray_build_gives_the_local_neighbours(local_ray, model, image_dir: Path, tmp_path: Path) -> None:
    remote, local = build_both(model, image_dir, tmp_path)
    assert len(remote) == NUM_GOOD_IMAGES and set(remote.skipped) == BAD_FILES
    assert (remote.directory / "skipped.txt").read_text() == (local.directory / "skipped.txt").read_text()
    assert_same_index(remote, local)


@pytest.mark.slow
def test_ray_add_gives_the_local_additions(local_ray, model, image_dir: Path, tmp_path: Path) -> None:
    remote, local = build_both(model, image_dir, tmp_path)
    write_images(image_dir / "more", 6, seed=11, prefix="new")
    (image_dir / "more" / "broken.png").write_bytes(b"\x89PNG")  # one more unreadable file
    local_summary = local.add(image_dir, num_workers=0)
    assert remote.add(image_dir, engine="ray") == local_summary
    assert local_summary.added == 6 and local_summary.skipped == 4
    assert_same_index(Index.load(remote.directory, model=model), Index.load(local.directory, model=model))


def test_engine_arguments_are_checked_before_any_work(model, image_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"use it with engine='ray' \(--engine ray\)"):
        Index.build(model, image_dir, tmp_path / "index", address="head:6379")
    with pytest.raises(ValueError, match=r"leave num_workers \(--num-workers\) out"):
        Index.build(model, image_dir, tmp_path / "index", engine="ray", num_workers=2)
    with pytest.raises(ValueError, match="engine must be one of"):
        Index.build(model, image_dir, tmp_path / "index", engine="spark")
    assert not (tmp_path / "index").exists()


def invoke(*args: object) -> Result:
    return CliRunner().invoke(main, [str(arg) for arg in args])


def test_cli_refuses_address_without_ray_engine_and_workers_with_it(image_dir: Path, tmp_path: Path) -> None:
    result = invoke("build", image_dir, "--index", tmp_path / "index", "--address", "head:6379")
    assert result.exit_code == 2
    assert "address head:6379 (--address) is where a Ray cluster runs: use it with engine='ray' (--engine ray)" in result.output
    result = invoke("build", image_dir, "--index", tmp_path / "index", "--engine", "ray", "--num-workers", "2")
    assert result.exit_code == 2 and "leave num_workers (--num-workers) out" in result.output
    result = invoke("add", tmp_path, image_dir, "--engine", "local", "--address", "head:6379")  # checked before loading
    assert result.exit_code == 2 and "use it with engine='ray' (--engine ray)" in result.output
    result = invoke("build", image_dir, "--index", tmp_path / "index", "--engine", "spark")
    assert result.exit_code == 2 and "'spark' is not one of 'local', 'ray'" in result.output
    assert not (tmp_path / "index").exists()


def test_cli_without_ray_says_how_to_install_it_before_training(monkeypatch, image_dir: Path, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails, as without the extra
    result = invoke("build", image_dir, "--index", tmp_path / "index", "--engine", "ray")  # would train first
    assert result.exit_code == 1 and "pip install 'dim-toolkit[ray]'" in result.output
    assert not (tmp_path / "index").exists()  # no model was trained


@pytest.mark.slow
def test_cli_build_with_engine_ray_matches_the_local_build(
    local_ray, dim_checkpoint: Path, image_dir: Path, tmp_path: Path
) -> None:
    """With a real DIM checkpoint: its model is pickled to the actors and gives the local vectors."""
    common = ["--model", dim_checkpoint, "--device", "cpu"]
    for engine, extra in (("local", ["--num-workers", "0"]), ("ray", ["--engine", "ray"])):
        result = invoke("build", image_dir, "--index", tmp_path / engine, *common, *extra)
        assert result.exit_code == 0, result.output
        assert f"indexed {NUM_GOOD_IMAGES}, skipped 3" in result.output
    assert (tmp_path / "ray" / "skipped.txt").read_text() == (tmp_path / "local" / "skipped.txt").read_text()
    assert_same_index(Index.load(tmp_path / "ray"), Index.load(tmp_path / "local"))
