"""Run directories: the rules of a fresh and a resumed run, RNG restore, the result type."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
import torch

from dim.core.atomic import atomic_save
from dim.core.checkpoint import make_checkpoint
from dim.core.runs import TrainResult, open_run, restore_rng, rng_state


@dataclass
class ToyConfig:
    dataset: str = "shapes"
    out: str | None = None
    epochs: int = 1
    lr: float = 0.1
    data_dir: str | None = None


def _save_run(run_dir, config: ToyConfig) -> None:
    atomic_save(make_checkpoint("toy", vars(config), 3, {}, {}, [rng_state()]), run_dir / "checkpoint.pt")


def test_a_fresh_run_gets_a_default_directory_and_never_overwrites_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config, run_dir, checkpoint = open_run(ToyConfig(), kind="toy", resume=False, resumable=(), from_dict=None)
    assert checkpoint is None and run_dir.parent.name == "runs" and run_dir.name.startswith("toy-shapes-")
    assert config.out == str(run_dir)
    _save_run(tmp_path, ToyConfig())
    with pytest.raises(ValueError, match="already holds a run: pass --resume"):
        open_run(ToyConfig(out=str(tmp_path)), kind="toy", resume=False, resumable=(), from_dict=None)


def test_a_resumed_run_keeps_its_settings_but_the_resumable_ones(tmp_path):
    _save_run(tmp_path, ToyConfig(epochs=1, lr=0.1, data_dir="/data"))
    given = ToyConfig(out=str(tmp_path), epochs=5, lr=9.0, data_dir=None)
    config, run_dir, checkpoint = open_run(
        given, kind="toy", resume=True, resumable=("epochs", "data_dir"), from_dict=lambda d: ToyConfig(**d)
    )
    assert (config.epochs, config.lr, config.data_dir, config.out) == (5, 0.1, "/data", str(tmp_path))
    assert checkpoint["step"] == 3 and run_dir == tmp_path


def test_resume_needs_a_directory_of_the_right_kind(tmp_path):
    with pytest.raises(ValueError, match="--out RUN$"):
        open_run(ToyConfig(), kind="toy", resume=True, resumable=(), from_dict=None)
    with pytest.raises(FileNotFoundError, match="without checkpoint.pt"):
        open_run(ToyConfig(out=str(tmp_path)), kind="toy", resume=True, resumable=(), from_dict=None)
    _save_run(tmp_path, ToyConfig())
    with pytest.raises(ValueError, match="'toy' checkpoint, but a 'dim' checkpoint is needed"):
        open_run(ToyConfig(out=str(tmp_path)), kind="dim", resume=True, resumable=(), from_dict=None)


def test_restore_rng_replays_the_saved_stream_and_warns_on_another_world_size():
    torch.manual_seed(1)
    random.seed(1)
    states = [rng_state()]
    expected = (torch.rand(3), random.random())
    restore_rng(states, rank=0, world_size=1)
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]
    with pytest.warns(UserWarning, match="random state of 1 processes but this run has 2.*not bit-exactly"):
        restore_rng(states, rank=1, world_size=2)


def test_train_result_rate():
    result = TrainResult(run_dir=None, step=10, seconds=2.0, steps=4)
    assert result.steps_per_s == 2.0 and result.metrics == {} and result.rows == []
