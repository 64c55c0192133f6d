"""Checkpoint files: atomic writes and weights-only loading with a check of what the file is."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FORMAT = 1


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(temporary_path)`` in ``path``'s folder, then rename the result into place.

    A crash mid-write leaves the previous file intact instead of a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`atomic_write`."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


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


def load_checkpoint(
    path: str | os.PathLike,
    kind: str | Collection[str],
    map_location: str | torch.device = "cpu",
    mmap: bool = False,
) -> dict:
    """Load a checkpoint dict written by this toolkit and check what it is.

    Args:
        path: the ``checkpoint.pt`` file, or a run directory that holds one.
        kind: the expected ``checkpoint["kind"]`` (e.g. ``"dim"``), or several accepted kinds.
        map_location: where to put the tensors.
        mmap: map the file instead of reading it (cheap when only a few entries are needed).

    Raises:
        FileNotFoundError: if there is no checkpoint at ``path``.
        ValueError: if the file is not a checkpoint of an expected kind.
    """
    file = checkpoint_file(path)
    try:
        checkpoint = torch.load(file, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as error:  # pickle errors, truncated files, foreign formats
        raise ValueError(f"{file} is not a readable checkpoint: {error}") from error
    if not isinstance(checkpoint, dict) or "kind" not in checkpoint:
        raise ValueError(f"{file} is not a checkpoint written by this toolkit (no 'kind' entry)")
    kinds = [kind] if isinstance(kind, str) else list(kind)
    if checkpoint["kind"] not in kinds:
        needed = f"a {kinds[0]!r} checkpoint is needed" if len(kinds) == 1 else f"one of {kinds} is needed"
        raise ValueError(f"{file} is a {checkpoint['kind']!r} checkpoint, but {needed} here")
    return checkpoint
