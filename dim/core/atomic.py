"""Writes that never leave a half-written file: write a temporary file beside the target, then rename it.

``os.replace`` is atomic on POSIX and Windows, so a reader (or a crash) sees
either the previous file or the new one, never a truncated mix. Every file the
toolkit writes that a later run reads (checkpoints, caches, metrics pictures,
result JSON) goes through :func:`atomic_write`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

_UMASK = os.umask(0)  # read once at import (reading it means setting it) and put back at once
os.umask(_UMASK)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(temporary_path)`` in ``path``'s folder, then rename the result into place.

    A crash mid-write leaves the previous file intact instead of a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private (0600); the file gets a new file's usual mode
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`atomic_write`."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_write`."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON (with a final newline) to ``path`` through :func:`atomic_write`."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
