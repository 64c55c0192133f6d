"""The files of an index directory, each written atomically (temporary file + rename).

* ``index.faiss``: the Faiss index (:mod:`retrieval.ann`), ids = metadata ids.
* ``metadata.csv``: ``id,path,size,mtime``, one row per indexed image; ``path``
  is relative to the manifest's ``image_root`` (absolute for files added from
  outside it), ``mtime`` in seconds since the epoch.
* ``skipped.txt``: ``path<TAB>reason`` for every file that could not be read.
* ``manifest.json``: the model fingerprint, preprocessing, index type and
  parameters, counts and times (see :class:`retrieval.index.Index`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss

from dim.core.checkpoint import atomic_write

INDEX_FILE = "index.faiss"
METADATA_FILE = "metadata.csv"
SKIPPED_FILE = "skipped.txt"
MANIFEST_FILE = "manifest.json"
METADATA_FIELDS = ("id", "path", "size", "mtime")
# File names are bytes on POSIX; surrogateescape round-trips names that are not valid UTF-8.
_TEXT = {"encoding": "utf-8", "errors": "surrogateescape"}


@dataclass(frozen=True)
class ImageRecord:
    """One indexed image: its Faiss id, path (relative to the image root), size in bytes and mtime."""

    id: int
    path: str
    size: int
    mtime: float


def _write_text(path: Path, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", **_TEXT) as handle:
            handle.write(text)

    atomic_write(path, write)


def write_index(directory: Path, index: faiss.Index) -> None:
    atomic_write(directory / INDEX_FILE, lambda tmp: faiss.write_index(index, tmp))


def read_index(directory: Path) -> faiss.Index:
    path = directory / INDEX_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} has no {INDEX_FILE}; the index is incomplete, rebuild it")
    return faiss.read_index(str(path))


def write_metadata(directory: Path, records: Iterable[ImageRecord]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="", **_TEXT) as handle:
            writer = csv.writer(handle)
            writer.writerow(METADATA_FIELDS)
            writer.writerows((r.id, r.path, r.size, repr(r.mtime)) for r in records)

    atomic_write(directory / METADATA_FILE, write)


def read_metadata(directory: Path) -> list[ImageRecord]:
    path = directory / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} has no {METADATA_FILE}; the index is incomplete, rebuild it")
    with open(path, newline="", **_TEXT) as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != METADATA_FIELDS:
            raise ValueError(f"{path} has columns {reader.fieldnames}, expected {list(METADATA_FIELDS)}")
        try:
            return [ImageRecord(int(r["id"]), r["path"], int(r["size"]), float(r["mtime"])) for r in reader]
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path} line {reader.line_num}: malformed row ({error})") from error


def write_skipped(directory: Path, skipped: dict[str, str]) -> None:
    """``skipped`` maps path -> reason; written sorted by path."""
    _write_text(directory / SKIPPED_FILE, "".join(f"{p}\t{reason}\n" for p, reason in sorted(skipped.items())))


def read_skipped(directory: Path) -> dict[str, str]:
    path = directory / SKIPPED_FILE
    if not path.is_file():
        return {}
    lines = path.read_text(**_TEXT).splitlines()
    return dict(line.split("\t", 1) if "\t" in line else (line, "") for line in lines if line)


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    _write_text(directory / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{directory} is not a search index (no {MANIFEST_FILE}); create one with `dim-search build`"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from error
