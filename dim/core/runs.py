"""Run directories, shared by every trainer: creating or resuming one, its config, RNG state, results.

A run directory holds ``config.json`` (the run's settings), ``checkpoint.pt``
(:mod:`dim.core.checkpoint`'s layout, written atomically), ``metrics.csv``
(:class:`dim.core.metrics.MetricsLog`; TensorBoard events next to it when
``tensorboard`` is installed, ``curves.png`` when matplotlib is) and whatever
pictures the product draws.

A trainer starts with :func:`open_run`, which applies the same rules to every
product: a fresh run never overwrites a directory that holds a checkpoint; a
resumed run takes its saved settings, except the few the product lists as
changeable on resume.
"""

from __future__ import annotations

import dataclasses
import json
import random
import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from dim.core.checkpoint import load_checkpoint

Config = TypeVar("Config")


def default_run_dir(prefix: str, root: str | Path = "runs") -> Path:
    """``runs/<prefix>-YYYYmmdd-HHMMSS``, a fresh folder name for a new run."""
    return Path(root) / f"{prefix}-{datetime.now():%Y%m%d-%H%M%S}"


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    """Write ``config.json`` (sorted keys, indented) into the run directory."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


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


def open_run(
    config: Config,
    *,
    kind: str,
    resume: bool,
    resumable: Collection[str],
    from_dict: Callable[[dict[str, Any]], Config],
    broadcast: Callable[[Any], Any] = lambda value: value,
) -> tuple[Config, Path, dict[str, Any] | None]:
    """Create or resume a run directory, with the same rules for every product.

    Args:
        config: the requested settings, a dataclass with an ``out`` field (the run
            directory; ``None`` for ``runs/<kind>-<dataset>-<time>``) and a ``dataset`` field.
        kind: the product's checkpoint kind (``"dim"``, ``"infogan"``).
        resume: continue the run in ``config.out`` from its checkpoint.
        resumable: the settings a resumed run takes from ``config``; every other one
            comes from the checkpoint. ``data_dir`` left at ``None`` keeps the run's own.
        from_dict: rebuilds the config from the checkpoint's ``config`` entry.
        broadcast: under data parallelism, sends rank 0's value to every process
            (:meth:`dim.core.distributed.DistributedContext.broadcast`), so all
            ranks agree on a default run directory's time stamp.

    Returns:
        ``(config, run_dir, checkpoint)``: the settings to run with (``out`` set to
        the run directory), the directory, and the loaded checkpoint (``None`` for a fresh run).

    Raises:
        ValueError: for ``resume`` without ``config.out``, or a fresh run into a
            directory that already holds a checkpoint (which it would overwrite).
        FileNotFoundError: for ``resume`` where there is no checkpoint.
    """
    if resume:
        if config.out is None:
            raise ValueError("resume needs the run directory to continue: pass --out RUN")
        run_dir = Path(config.out)
        checkpoint = load_checkpoint(run_dir, kind)
        changes = {name: getattr(config, name) for name in resumable}
        if changes.get("data_dir", "") is None:
            del changes["data_dir"]
        config = dataclasses.replace(from_dict(checkpoint["config"]), **changes, out=str(run_dir))
        return config, run_dir, checkpoint
    run_dir = Path(broadcast(str(config.out or default_run_dir(f"{kind}-{Path(config.dataset).name}"))))
    if (run_dir / "checkpoint.pt").exists():
        raise ValueError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another --out")
    return dataclasses.replace(config, out=str(run_dir)), run_dir, None


def restore_rng(states: list[dict[str, Any]], rank: int, world_size: int) -> None:
    """Restore this process's RNG from a checkpoint's per-rank states, for an exact resume.

    A run resumed on another number of processes cannot continue exactly: the
    RNGs are then left as seeded, with a warning that says so.
    """
    if len(states) == world_size:
        set_rng_state(states[rank])
        return
    warnings.warn(
        f"the checkpoint holds the random state of {len(states)} processes but this run has {world_size}: "
        f"training continues from the saved weights and step, but not bit-exactly (the random streams restart "
        f"from the seed)",
        stacklevel=2,
    )


@dataclass
class TrainResult:
    """What a call to a product's ``train`` did (the same type for every product).

    Attributes:
        run_dir: the run directory (``None`` when nothing was written, as in benchmarks).
        step: optimiser steps taken in total, counting earlier sessions of a resumed run.
        seconds: training time of this call (evaluation excluded).
        steps: optimiser steps taken by this call.
        metrics: the last value of every logged metric (losses, MI estimates in nats,
            ``knn_top1``, ``epoch``, ...).
        rows: the ``metrics.csv`` rows written by this call.
    """

    run_dir: Path | None
    step: int
    seconds: float
    steps: int
    metrics: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def steps_per_s(self) -> float:
        """Optimiser steps per second of this call."""
        return self.steps / max(self.seconds, 1e-9)


@dataclass
class TrainedRun:
    """A trained run loaded back by a product's ``checkpoint.load_run`` (the same type for every product).

    Attributes:
        model: the product's whole model (``build_model``'s module), weights loaded, in eval mode.
        config: the run's settings (the product's resolved ``TrainConfig``).
        step: optimiser steps it was trained for.
        classes: the training set's class names (``[]`` when unlabelled).
        path: the checkpoint file.
        kind: the checkpoint kind (one of the product's ``KINDS``).
    """

    model: torch.nn.Module
    config: Any
    step: int
    classes: list[str]
    path: Path
    kind: str

    @property
    def run_dir(self) -> Path:
        """The run directory: the folder of :attr:`path`."""
        return self.path.parent
