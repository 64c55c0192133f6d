"""Small helpers shared by the trainers and CLIs: device choice, seeding, checkpoints."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def select_device(name: str = "auto") -> torch.device:
    """Return the device to run on.

    Args:
        name: ``"auto"`` picks CUDA, then Apple MPS, then the CPU; anything else
            (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``) is taken as given.

    Raises:
        ValueError: if the requested accelerator is not available here.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was requested but CUDA is not available; use --device auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} was requested but MPS is not available; use --device auto or cpu")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) for a reproducible run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename it into place.

    A crash mid-write leaves the previous file intact instead of a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike, kind: str, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint dict written by this toolkit and check what it is.

    Args:
        path: the ``checkpoint.pt`` file, or a run directory that holds one.
        kind: the expected ``checkpoint["kind"]`` (e.g. ``"dim"`` or ``"infogan"``).
        map_location: where to put the tensors.

    Raises:
        FileNotFoundError: if there is no checkpoint at ``path``.
        ValueError: if the file is not a checkpoint of the expected kind.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # pickle errors, truncated files, foreign formats
        raise ValueError(f"{path} is not a readable checkpoint: {error}") from error
    if not isinstance(checkpoint, dict) or "kind" not in checkpoint:
        raise ValueError(f"{path} is not a checkpoint written by this toolkit (no 'kind' entry)")
    if checkpoint["kind"] != kind:
        raise ValueError(f"{path} is a {checkpoint['kind']!r} checkpoint, but a {kind!r} checkpoint is needed here")
    return checkpoint
