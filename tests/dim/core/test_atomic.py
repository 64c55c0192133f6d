"""Atomic writes: a crash mid-write leaves the previous file and no temporary."""

from __future__ import annotations

import json
import os
import stat

import pytest

from dim.core.atomic import atomic_write, atomic_write_json


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"old")

    def crash(tmp: str) -> None:
        open(tmp, "wb").write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, crash)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_json_is_written_whole_and_replaces_the_old_file(tmp_path):
    path = tmp_path / "sub" / "eval_test.json"
    atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"knn_top1": 0.5, "classes": ["x"]})
    assert json.loads(path.read_text()) == {"knn_top1": 0.5, "classes": ["x"]}
    assert path.read_text().endswith("\n") and [p.name for p in path.parent.iterdir()] == ["eval_test.json"]


def test_the_file_gets_the_mode_of_any_new_file_not_a_private_one(tmp_path):
    path = tmp_path / "manifest.json"
    atomic_write_json(path, {})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
