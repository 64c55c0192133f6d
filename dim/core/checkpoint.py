"""The toolkit's one checkpoint layout, written atomically and loaded weights-only.

Every trainer (``dim train``, ``infogan train``) saves one plain dict,
``checkpoint.pt`` in its run directory, built by :func:`make_checkpoint`:

| key | what it holds |
| --- | --- |
| ``kind`` | the product that wrote it (``"dim"``, ``"infogan"``); it keys the feature-loader registry (:mod:`dim.core.registry`) |
| ``format`` | :data:`CHECKPOINT_FORMAT`; other formats are refused |
| ``config`` | the run's settings, as in ``config.json`` |
| ``step`` | optimiser steps taken so far |
| ``modules`` | ``{name: state_dict}`` of the networks (``"model"``, ...) |
| ``optimizers`` | ``{name: state_dict}`` of their optimisers |
| ``rng`` | every process's RNG state, in rank order (:func:`dim.core.runs.rng_state`) |
| ``state`` | the product's own facts: position in the epoch, image size, class names... |

Only tensors, numbers, strings, lists and dicts are stored, so
``torch.load(..., weights_only=True)`` reads it back and a checkpoint can
never run code.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FORMAT = 2
CHECKPOINT_KEYS = ("kind", "format", "config", "step", "modules", "optimizers", "rng", "state")


def checkpoint_file(path: str | os.PathLike) -> Path:
    """The checkpoint file for ``path``: the file itself, or ``path/checkpoint.pt`` for a run directory.

    Raises:
        FileNotFoundError: if there is no such file.
    """
    path = Path(path)
    file = path / "checkpoint.pt" if path.is_dir() else path
    if not file.is_file():
        where = f"{path} is a directory without checkpoint.pt" if path.is_dir() else f"no checkpoint at {path}"
        raise FileNotFoundError(f"{where}; pass a run directory or its checkpoint.pt")
    return file


def make_checkpoint(
    kind: str,
    config: dict[str, Any],
    step: int,
    modules: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    rng: list[dict[str, Any]],
    state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint dict of the layout above, from live modules and optimisers.

    Args:
        kind: the product's checkpoint kind.
        config: the run's settings as a plain dict.
        step: optimiser steps so far.
        modules: the networks by name; their ``state_dict()`` is stored.
        optimizers: their optimisers by name.
        rng: every process's :func:`dim.core.runs.rng_state`, in rank order.
        state: anything else the product needs to resume or load (plain values only).
    """
    return {
        "kind": kind,
        "format": CHECKPOINT_FORMAT,
        "config": config,
        "step": int(step),
        "modules": {name: module.state_dict() for name, module in modules.items()},
        "optimizers": {name: optimizer.state_dict() for name, optimizer in optimizers.items()},
        "rng": rng,
        "state": dict(state or {}),
    }


def load_checkpoint(
    path: str | os.PathLike,
    kind: str | Collection[str] | None,
    map_location: str | torch.device = "cpu",
    mmap: bool = False,
) -> dict[str, Any]:
    """Load a checkpoint dict written by this toolkit and check what it is.

    Args:
        path: the ``checkpoint.pt`` file, or a run directory that holds one.
        kind: the expected ``checkpoint["kind"]`` (e.g. ``"dim"``), several accepted
            kinds, or ``None`` for any kind.
        map_location: where to put the tensors.
        mmap: map the file instead of reading it (cheap when only a few entries are needed).

    Raises:
        FileNotFoundError: if there is no checkpoint at ``path``.
        ValueError: if the file is not a toolkit checkpoint, is of another format,
            or is not of an expected kind.
    """
    file = checkpoint_file(path)
    try:
        checkpoint = torch.load(file, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as error:  # pickle errors, truncated files, foreign formats
        raise ValueError(f"{file} is not a readable checkpoint: {error}") from error
    if not isinstance(checkpoint, dict) or "kind" not in checkpoint:
        raise ValueError(f"{file} is not a checkpoint written by this toolkit (no 'kind' entry)")
    if kind is not None:
        kinds = [kind] if isinstance(kind, str) else list(kind)
        if checkpoint["kind"] not in kinds:
            needed = f"a {kinds[0]!r} checkpoint is needed" if len(kinds) == 1 else f"one of {kinds} is needed"
            raise ValueError(f"{file} is a {checkpoint['kind']!r} checkpoint, but {needed} here")
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{file} is a checkpoint of format {checkpoint.get('format')!r}, but this version of dim-toolkit "
            f"reads format {CHECKPOINT_FORMAT} (see CHANGELOG.md): train the run again, or load it with the "
            f"version that wrote it"
        )
    missing = [key for key in CHECKPOINT_KEYS if key not in checkpoint]
    if missing:
        raise ValueError(f"{file} lacks the checkpoint entries {missing}: it is truncated or not from this toolkit")
    return checkpoint
