"""Run directories shared by the DIM and InfoGAN trainers: config, metrics, RNG state.

A run directory holds ``config.json`` (what was asked for), ``checkpoint.pt``
(one plain dict, written atomically by :func:`dim.core.checkpoint.atomic_save`) and
``metrics.csv`` (one row per logged step or epoch). TensorBoard events are
written next to them when the optional ``tensorboard`` package is installed.
"""

from __future__ import annotations

import csv
import json
import random
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch


def default_run_dir(prefix: str, root: str | Path = "runs") -> Path:
    """``runs/<prefix>-YYYYmmdd-HHMMSS``, a fresh folder name for a new run."""
    return Path(root) / f"{prefix}-{datetime.now():%Y%m%d-%H%M%S}"


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    """Write ``config.json`` (sorted keys, indented) into the run directory."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def read_config(run_dir: Path) -> dict[str, Any]:
    """Read a run directory's ``config.json``."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no config.json: is it a run directory?")
    return json.loads(path.read_text())


class MetricsLog:
    """Append rows to ``metrics.csv`` (and to TensorBoard when it is installed).

    The header is taken from the first row; later rows may not add columns.
    Resuming appends to the existing file.
    """

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / "metrics.csv"
        self.fields: list[str] | None = None
        if self.path.is_file() and self.path.stat().st_size > 0:
            with self.path.open(newline="") as handle:
                self.fields = next(csv.reader(handle), None)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional extra
                pass
            else:
                self.writer = SummaryWriter(log_dir=str(run_dir))

    def log(self, step: int, **values: float) -> None:
        row = {"step": step, **values}
        if self.fields is None:
            self.fields = list(row)
            with self.path.open("w", newline="") as handle:
                csv.writer(handle).writerow(self.fields)
        unknown = set(row) - set(self.fields)
        if unknown:
            raise ValueError(f"metrics {sorted(unknown)} are not columns of {self.path} ({self.fields})")
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=self.fields).writerow(row)
        if self.writer is not None:
            for name, value in values.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(name, value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def rng_state() -> dict[str, Any]:
    """Every RNG a training loop draws from, in a form ``torch.load(weights_only=True)`` accepts."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
        "numpy_pos": int(np.random.get_state()[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
