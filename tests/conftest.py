"""Test-wide fixtures: keep every test away from the user's caches and data folders."""

import pytest


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path_factory, monkeypatch):
    """Decoded-dataset caches go to a temporary folder, and no test sees a real data dir."""
    monkeypatch.setenv("DIM_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("DIM_DATA_DIR", raising=False)
