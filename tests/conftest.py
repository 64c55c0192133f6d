"""Test-wide settings and fixtures: passive OpenMP threads, and every test away from the user's caches and data."""

import os

import pytest

# One test process holds two OpenMP runtimes (torch's and faiss's) beside decoding workers and subprocesses;
# threads that spin while they wait then take the cores from each other (several times slower on two cores).
# Read when torch is first imported, which happens after this file.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path_factory, monkeypatch):
    """Decoded-dataset caches go to a temporary folder, and no test sees a real data dir."""
    monkeypatch.setenv("DIM_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("DIM_DATA_DIR", raising=False)
