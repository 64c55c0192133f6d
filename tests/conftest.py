"""Test-wide settings and fixtures: passive OpenMP threads, and every test away from the user's caches and data."""

import os

import pytest

# One test process holds two OpenMP runtimes (torch's and faiss's) beside decoding workers and subprocesses;
# threads that spin while they wait then take the cores from each other (several times slower on two cores).
# Read when torch is first imported, which happens after this file.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Under pytest-xdist every core already runs a test process: one OpenMP thread each, not one per core each.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path_factory, monkeypatch):
    """Decoded-dataset caches go to a temporary folder, and no test sees a real data dir."""
    monkeypatch.setenv("DIM_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("DIM_DATA_DIR", raising=False)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of two CPUs for the Ray engine's tests of one module, shut down after them (its processes
    would otherwise take CPU from the rest of the suite).

    Ray Data is in the test extra, so CI runs them; without it they are skipped.
    """
    ray = pytest.importorskip("ray", reason="the Ray engine's tests need pip install 'dim-toolkit[ray]'")
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()
