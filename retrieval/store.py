"""The files of an index directory, and how a write switches them in as one.

* ``index.faiss``: the Faiss index (:mod:`retrieval.ann`), ids = metadata ids.
* ``metadata.csv``: ``id,path,size,mtime``, one row per indexed image; ``path``
  is relative to the manifest's ``image_root`` (absolute for files added from
  outside it), ``mtime`` in seconds since the epoch.
* ``skipped.txt``: ``path<TAB>reason`` for every file that could not be read.
* ``manifest.json``: the model fingerprint, preprocessing, index type and
  parameters, counts and times (see :class:`retrieval.index.Index`), and the
  ``write`` that produced the files: a write id, and each file's size and CRC-32.
* ``write.lock``: present while a writer works (:mod:`retrieval.lock`).

A write (:func:`write_files`) first stages every changed file, complete and
synced, in a private folder ``.write-<id>/``, the manifest last: a staged
manifest marks the write as committed. It then renames the staged files into
place, the manifest last, and removes the folder. A writer killed while
staging leaves the previous files untouched (the folder is discarded later);
one killed while renaming leaves a committed folder, which :func:`recover`
finishes moving in. Readers check every file against the manifest's sizes and
checksums (:func:`verify_file`), so files of two different writes are never
taken for one index.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import uuid
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss

from dim.core.atomic import atomic_write

INDEX_FILE = "index.faiss"
METADATA_FILE = "metadata.csv"
SKIPPED_FILE = "skipped.txt"
MANIFEST_FILE = "manifest.json"
STAGING_PREFIX = ".write-"
METADATA_FIELDS = ("id", "path", "size", "mtime")
# File names are bytes on POSIX; surrogateescape round-trips names that are not valid UTF-8.
_TEXT = {"encoding": "utf-8", "errors": "surrogateescape"}

Writer = Callable[[Path], None]


class DamagedIndexError(ValueError):
    """A file of the index is damaged, truncated, or from another write than its manifest."""


@dataclass(frozen=True)
class ImageRecord:
    """One indexed image: its Faiss id, path (relative to the image root), size in bytes and mtime."""

    id: int
    path: str
    size: int
    mtime: float


# ---------------------------------------------------------------------- file contents


def faiss_writer(index: faiss.Index) -> Writer:
    """What writes ``index.faiss``."""
    return lambda path: faiss.write_index(index, str(path))


def metadata_writer(records: Iterable[ImageRecord]) -> Writer:
    """What writes ``metadata.csv``."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(METADATA_FIELDS)
    writer.writerows((r.id, r.path, r.size, repr(r.mtime)) for r in records)
    return _text_writer(buffer.getvalue())


def skipped_writer(skipped: dict[str, str]) -> Writer:
    """What writes ``skipped.txt``; ``skipped`` maps path -> reason, written sorted by path."""
    return _text_writer("".join(f"{p}\t{reason}\n" for p, reason in sorted(skipped.items())))


def _text_writer(text: str) -> Writer:
    def write(path: Path) -> None:
        with open(path, "w", newline="", **_TEXT) as handle:
            handle.write(text)

    return write


def read_index(directory: Path) -> faiss.Index:
    """Read ``index.faiss``; check it with :func:`verify_file` first, Faiss does not expect damage."""
    path = directory / INDEX_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} has no {INDEX_FILE}; the index is incomplete, rebuild it")
    try:
        return faiss.read_index(str(path))
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DamagedIndexError(f"{path} is damaged and Faiss cannot read it ({first_line})") from error


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


def read_skipped(directory: Path) -> dict[str, str]:
    path = directory / SKIPPED_FILE
    if not path.is_file():
        return {}
    lines = path.read_text(**_TEXT).splitlines()
    return dict(line.split("\t", 1) if "\t" in line else (line, "") for line in lines if line)


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{directory} is not a search index (no {MANIFEST_FILE}); create one with `dim-search build`"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DamagedIndexError(f"{path} is damaged: not valid JSON ({error})") from error


# ---------------------------------------------------------------------- writes


def file_checksum(path: Path, chunk_size: int = 1 << 20) -> dict[str, int]:
    """``{"bytes": size, "crc32": CRC-32}`` of a file, read in chunks."""
    crc, size = 0, 0
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            crc, size = zlib.crc32(chunk, crc), size + len(chunk)
    return {"bytes": size, "crc32": crc}


def verify_file(directory: Path, name: str, manifest: dict[str, Any]) -> None:
    """Check that ``directory/name`` is the file the manifest's write recorded.

    Raises:
        FileNotFoundError: if the file is missing.
        DamagedIndexError: if its size or checksum differs (truncated, damaged, or from
            another write); the message names the file and what was expected.
    """
    expected = manifest["write"]["files"][name]
    path = directory / name
    if not path.is_file():
        raise FileNotFoundError(f"{directory} has no {name}; the index is incomplete")
    found = file_checksum(path)
    if found != expected:
        what = "truncated" if found["bytes"] < expected["bytes"] else "damaged"
        raise DamagedIndexError(
            f"{path} is {what} or from another write: it has {found['bytes']} bytes (CRC-32 {found['crc32']:08x}), "
            f"but write {manifest['write']['id']} recorded {expected['bytes']} bytes (CRC-32 {expected['crc32']:08x})"
        )


def staging_dirs(directory: Path) -> list[Path]:
    """The ``.write-*`` folders of writes that did not finish (normally none)."""
    return sorted(path for path in directory.glob(STAGING_PREFIX + "*") if path.is_dir())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _synced(write: Writer) -> Writer:
    """``write``, then flush the file to disk."""

    def write_and_sync(path: str | os.PathLike) -> None:
        write(Path(path))
        _fsync(Path(path))

    return write_and_sync


def _move_into_place(staged: Path, target: Path) -> None:
    os.replace(staged, target)


def write_files(directory: Path, files: dict[str, Writer], manifest: dict[str, Any]) -> str:
    """Write ``files`` (name -> writer) and then the manifest, switched in as one write.

    Call it holding the index lock (:class:`retrieval.lock.IndexLock`). The
    manifest's ``write`` entry is set here: a new id, and the size and CRC-32 of
    every file, those not rewritten carried over from the previous write.

    Args:
        directory: the index directory.
        files: the files this write changes, each written by ``writer(path)``.
        manifest: the manifest to write (its ``write`` entry is replaced, in place).

    Returns:
        The write id.
    """
    write_id = uuid.uuid4().hex
    staging = directory / f"{STAGING_PREFIX}{write_id}"
    staging.mkdir(parents=True)
    try:
        checksums = dict(manifest.get("write", {}).get("files", {}))
        for name, write in files.items():
            _synced(write)(staging / name)
            checksums[name] = file_checksum(staging / name)
        manifest["write"] = {"id": write_id, "files": checksums}
        # The commit point: once the staged manifest exists, the write is rolled forward.
        atomic_write(staging / MANIFEST_FILE, _synced(_text_writer(json.dumps(manifest, indent=2) + "\n")))
        _fsync(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _switch_in(staging, directory)
    return write_id


def _switch_in(staging: Path, directory: Path) -> None:
    """Rename a committed write's files into place, the manifest last, then drop its folder."""
    for staged in sorted(staging.iterdir(), key=lambda path: path.name == MANIFEST_FILE):
        if not staged.name.startswith("."):
            _move_into_place(staged, directory / staged.name)
    _fsync(directory)
    shutil.rmtree(staging, ignore_errors=True)


def recover(directory: Path) -> bool:
    """Finish or discard writes that were interrupted; call it holding the index lock.

    A committed write (its staged manifest exists) is switched in; an uncommitted
    one is deleted, leaving the previous files as they were.

    Returns:
        True if a committed write was switched in.
    """
    finished = False
    for staging in staging_dirs(directory):
        if (staging / MANIFEST_FILE).is_file():
            _switch_in(staging, directory)
            finished = True
        else:
            shutil.rmtree(staging, ignore_errors=True)
    return finished
