"""Metrics of a training run: on-device windows, ``metrics.csv``, TensorBoard and ``curves.png``.

The hot path of a trainer adds each step's statistics to a
:class:`MetricWindow` on the device; the window is read back once per log
interval (the only device sync), and the means go to the progress bar and
to :class:`MetricsLog`.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from dim.core.atomic import atomic_write

# Columns that curves.png draws: the losses, the MI estimates and other dependence terms (as the trainers name them).
CURVE_WORDS = ("loss", "mi", "prior", "knn", "corr")


class MetricWindow:
    """Per-step statistics summed on the device and read back once per log interval.

    Args:
        names: the statistics, in the order of the tensors passed to :meth:`add`.
        device: where the sums live (the training device).

    Example:
        >>> window = MetricWindow(["loss", "mi"], device)
        >>> window.add(torch.stack([loss.detach(), mi]))  # each step, no sync
        >>> means = window.read()  # every log_every steps: {"loss": ..., "mi": ...}
    """

    def __init__(self, names: Sequence[str], device: torch.device | str) -> None:
        self.names = list(names)
        self.sums = torch.zeros(len(self.names), device=device)
        self.steps = 0

    def add(self, values: Tensor) -> None:
        """Add one step's ``(len(names),)`` values (stays on the device)."""
        if values.shape != self.sums.shape:
            raise ValueError(f"expected {len(self.names)} values ({', '.join(self.names)}), got {tuple(values.shape)}")
        self.sums += values.detach().float()
        self.steps += 1

    def read(self) -> dict[str, float]:
        """The mean of each statistic since the last read (one device sync), then start a new window."""
        means = (self.sums / max(self.steps, 1)).tolist()
        self.sums.zero_()
        self.steps = 0
        return dict(zip(self.names, means))


class MetricsLog:
    """Append rows to ``metrics.csv`` (and to TensorBoard when it is installed).

    The header is taken from the first row; later rows may not add columns.
    Resuming appends to the existing file. :meth:`close` draws ``curves.png``
    next to it (:func:`plot_curves`).

    Args:
        run_dir: the run directory.
        tensorboard: also write TensorBoard events when ``tensorboard`` is installed.
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
        """Append one row: ``step`` and the named values (the first row fixes the columns)."""
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
        """Close TensorBoard's writer and draw ``curves.png`` (when matplotlib is installed)."""
        if self.writer is not None:
            self.writer.close()
        if self.fields is not None:
            plot_curves(self.path, self.path.with_name("curves.png"))


def plot_curves(metrics_csv: str | os.PathLike, out: str | os.PathLike) -> Path | None:
    """Draw the losses and MI estimates of a ``metrics.csv`` against the step, one panel each.

    Draws every numeric column whose name contains one of :data:`CURVE_WORDS`.
    Needs matplotlib (the ``plots`` extra); without it nothing is drawn.

    Returns:
        The PNG written (atomically), or ``None`` without matplotlib or without rows.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # matplotlib is an optional extra
        return None
    with open(metrics_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return None

    def number(text: str) -> float:
        try:
            return float(text)
        except (TypeError, ValueError):
            return math.nan

    steps = [number(row["step"]) for row in rows]
    columns = [name for name in rows[0] if name != "step" and any(word in name for word in CURVE_WORDS)]
    columns = [name for name in columns if any(math.isfinite(number(row[name])) for row in rows)]
    if not columns:
        return None
    cols = min(3, len(columns))
    lines = math.ceil(len(columns) / cols)
    figure, axes = plt.subplots(lines, cols, figsize=(4 * cols, 2.8 * lines), squeeze=False)
    for axis, name in zip(axes.flat, columns):
        axis.plot(steps, [number(row[name]) for row in rows], marker="." if len(rows) < 50 else None)
        axis.set_title(name + (" (nats)" if "mi" in name.split("_") else ""), fontsize=9)
        axis.set_xlabel("step", fontsize=8)
        axis.tick_params(labelsize=7)
    for axis in list(axes.flat)[len(columns):]:
        axis.set_visible(False)
    figure.tight_layout()
    out = Path(out)
    atomic_write(out, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    plt.close(figure)
    return out
