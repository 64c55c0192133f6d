"""From duplicate groups to a cleaned collection: keep one copy of each group, move the others aside, undo.

Nothing is ever deleted. :func:`plan_moves` picks the copy to keep in each group
of :func:`retrieval.dedup.find_duplicates` by a rule (:data:`KEEP_RULES`), or
:func:`decide` takes choices made by hand (the review on ``dim-search serve``'s
page); :func:`apply` moves every other copy into a quarantine folder and takes
it out of the index; :func:`undo` puts every file back, byte for byte, and back
into the index.

**Rules.** Each rule ranks a group's copies whose file is still there and keeps
the first; ties go to the shorter full path, then to the path first in code-point
order, so the choice never depends on the order of the group:

* ``largest``: the most pixels (width x height, from the image's header), then the most bytes;
* ``newest`` / ``oldest``: the latest / earliest modification time;
* ``shortest-path``: the shortest full path.

With ``prefer=FOLDER``, a group that has copies under ``FOLDER`` keeps one of
those (ranked by the rule), whatever the others are.

**Quarantine.** A file keeps its path relative to the index's image root inside
the quarantine folder (``photos/2019/a.jpg`` -> ``QUARANTINE/2019/a.jpg``; a file
indexed from outside the root keeps its whole path under
``QUARANTINE/outside-image-root/``), so two moved files never share a name, and a
file already there is never overwritten: :func:`apply` refuses instead. The
folder must lie outside the image root (or ``dim-search add`` would index the
moved copies again) and outside the index directory.

**Journal.** Each apply writes ``INDEX_DIR/cleanups/N/``: ``vectors.npy``, the
moved images' vectors, then ``journal.json`` (state ``applying``, every move with
the file's SHA-256), both synced and written atomically
(:func:`dim.core.atomic.atomic_write`), before the first file moves. The files
then move one by one, the index is rewritten without them (under its lock, as
one write: :mod:`retrieval.store`), and the journal's state becomes ``applied``.
Undo sets it to ``undoing``, moves the files back, puts the images back into
the index with their stored vectors (nothing is embedded) and deletes the
journal. Every step can be done again: a move looks where the file is, so a
process killed at any point (even between the copy and the removal of a move
across file systems) loses no file. The next apply first finishes an interrupted
apply or undo (:func:`finish_interrupted`); an undo rolls an interrupted apply
back. Undo takes the cleanups back newest first, one per call.

Example:
    >>> from retrieval import Index, cleanup, find_duplicates
    >>> index = Index.load("photos.idx")
    >>> decisions = cleanup.plan_moves(find_duplicates(index), keep="largest", prefer="photos/originals")
    >>> journal = cleanup.apply(index, decisions, "quarantine/")
    >>> cleanup.undo(index)  # every file back, and back in the index
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from dim.core.atomic import atomic_write
from retrieval.dedup import DuplicateGroup, GroupImage, file_sha256
from retrieval.index import Index
from retrieval.store import ImageRecord

_RANKS: dict[str, Callable[[GroupImage], tuple]] = {  # smaller is better; ties: see _keeper_key
    "largest": lambda image: (-image.pixels, -(image.file_size or 0)),
    "newest": lambda image: (-(image.modified or 0.0),),
    "oldest": lambda image: (image.modified or 0.0,),
    "shortest-path": lambda image: (),
}
KEEP_RULES = tuple(_RANKS)
DEFAULT_KEEP = "largest"
JOURNAL_DIR = "cleanups"
JOURNAL_FILE = "journal.json"
VECTORS_FILE = "vectors.npy"
JOURNAL_FORMAT = 1
STATES = ("applying", "applied", "undoing")
OUTSIDE_ROOT = "outside-image-root"


@dataclass(frozen=True)
class Decision:
    """What happens to one group: the copy kept, and the copies moved to the quarantine folder."""

    keeper: GroupImage
    moved: tuple[GroupImage, ...]


@dataclass(frozen=True)
class Move:
    """One file of a cleanup: the image's metadata row, where it was, where it went, and its SHA-256.

    Attributes:
        record: the image's row in the index (as it was before the move).
        source: the file's full path in the collection.
        target: its full path in the quarantine folder.
        sha256: the hex SHA-256 of its bytes, read before the move.
        keeper: the id of the copy kept in its group.
    """

    record: ImageRecord
    source: str
    target: str
    sha256: str
    keeper: int

    def to_dict(self) -> dict[str, Any]:
        record = self.record
        return {
            "id": record.id, "path": record.path, "size": record.size, "mtime": record.mtime,
            "source": self.source, "target": self.target, "sha256": self.sha256, "keeper": self.keeper,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Move:
        record = ImageRecord(int(data["id"]), data["path"], int(data["size"]), float(data["mtime"]))
        return cls(record, data["source"], data["target"], data["sha256"], int(data["keeper"]))


@dataclass
class Journal:
    """The journal of one cleanup, in ``INDEX_DIR/cleanups/N/``.

    Attributes:
        directory: its folder.
        state: one of :data:`STATES`.
        move_to: the quarantine folder (full path).
        created: when the cleanup started (ISO 8601, UTC).
        moves: the files moved, in order.
    """

    directory: Path
    state: str
    move_to: str
    created: str
    moves: list[Move] = field(default_factory=list)

    @property
    def number(self) -> int:
        return int(self.directory.name)

    def save(self) -> None:
        """Write ``journal.json`` atomically and synced."""
        data = {
            "format": JOURNAL_FORMAT, "state": self.state, "move_to": self.move_to, "created": self.created,
            "moves": [move.to_dict() for move in self.moves],
        }
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"

        def write(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())

        atomic_write(self.directory / JOURNAL_FILE, write)
        _fsync_directory(self.directory)

    def vectors(self) -> np.ndarray:
        """``(len(moves), D)`` float32: the moved images' vectors, as they were in the index."""
        return np.load(self.directory / VECTORS_FILE)

    @classmethod
    def read(cls, directory: Path) -> Journal:
        path = directory / JOURNAL_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8", errors="surrogateescape"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path} is damaged ({error}); its moves are listed nowhere else") from error
        if data.get("format") != JOURNAL_FORMAT or data.get("state") not in STATES:
            raise ValueError(f"{path} is not a cleanup journal this version reads (format {data.get('format')!r})")
        moves = [Move.from_dict(move) for move in data["moves"]]
        return cls(directory, data["state"], data["move_to"], data["created"], moves)


# ---------------------------------------------------------------------- deciding


def _keeper_key(rule: str) -> Callable[[GroupImage], tuple]:
    return lambda image: (*_RANKS[rule](image), len(image.path), image.path)


def _under(path: str, folder: Path) -> bool:
    return Path(os.path.abspath(path)).is_relative_to(folder)


def choose_keeper(
    group: DuplicateGroup, keep: str = DEFAULT_KEEP, prefer: str | os.PathLike | None = None
) -> GroupImage | None:
    """The copy of ``group`` to keep: the first by the rule ``keep`` (see the module's notes).

    Args:
        group: from :func:`retrieval.dedup.find_duplicates`, or made by hand.
        keep: one of :data:`KEEP_RULES`.
        prefer: a folder; if some copies lie under it, the keeper is one of them.

    Returns:
        The keeper, or ``None`` when no copy's file is there any more.
    """
    if keep not in _RANKS:
        raise ValueError(f"keep must be one of {', '.join(KEEP_RULES)}; got {keep!r}")
    present = [image for image in group.images if image.exists]
    if prefer is not None:
        folder = Path(os.path.abspath(prefer))
        present = [image for image in present if _under(image.path, folder)] or present
    return min(present, key=_keeper_key(keep), default=None)


def plan_moves(
    groups: Sequence[DuplicateGroup], keep: str = DEFAULT_KEEP, prefer: str | os.PathLike | None = None
) -> list[Decision]:
    """Keep one copy of each group by a rule; the other copies whose file is there are to be moved.

    Args:
        groups: from :func:`retrieval.dedup.find_duplicates`.
        keep: one of :data:`KEEP_RULES` (see :func:`choose_keeper`).
        prefer: keep a copy under this folder when a group has one.

    Returns:
        One decision per group with a keeper and at least one copy to move (a group
        whose other files are gone needs none), in the order of ``groups``.
    """
    decisions = []
    for group in groups:
        keeper = choose_keeper(group, keep, prefer)
        if keeper is not None:
            moved = tuple(image for image in group.images if image.exists and image.id != keeper.id)
            if moved:
                decisions.append(Decision(keeper, moved))
    return decisions


def decide(groups: Sequence[DuplicateGroup], choices: Sequence[tuple[int, Sequence[int]]]) -> list[Decision]:
    """Decisions made by hand, by index id only, checked against ``groups``.

    Args:
        groups: the groups the choices were made on.
        choices: ``(keeper id, ids to move)`` for each group acted on.

    Raises:
        ValueError: if an id is in no group, a moved copy is not in its keeper's group,
            is the keeper, is named twice, or its file is gone; or a choice moves nothing.
    """
    where = {image.id: (number, image) for number, group in enumerate(groups) for image in group.images}
    named: set[int] = set()
    decisions = []
    for keep_id, move_ids in choices:
        if keep_id not in where:
            raise ValueError(f"image {keep_id} is in no duplicate group at this threshold; reload the groups")
        if not move_ids:
            raise ValueError(f"the choice that keeps image {keep_id} moves nothing; leave the group out instead")
        number, keeper = where[keep_id]
        moved = []
        for image_id in move_ids:
            if image_id == keep_id or where.get(image_id, (None,))[0] != number:
                raise ValueError(f"image {image_id} is not another copy in the group of image {keep_id}")
            if not where[image_id][1].exists:
                raise ValueError(f"the file of image {image_id} is gone; reload the groups")
            moved.append(where[image_id][1])
        for image_id in (keep_id, *move_ids):
            if image_id in named:
                raise ValueError(f"image {image_id} is named in two choices; each copy can be kept or moved once")
            named.add(image_id)
        decisions.append(Decision(keeper, tuple(moved)))
    return decisions


def actions(decisions: Sequence[Decision]) -> dict[int, str]:
    """Image id -> ``"keep"`` or ``"move"``, for the exports of :mod:`retrieval.dedup`."""
    found = {}
    for decision in decisions:
        found[decision.keeper.id] = "keep"
        found.update((image.id, "move") for image in decision.moved)
    return found


def quarantine_path(image_root: str | os.PathLike, path: str | os.PathLike, move_to: str | os.PathLike) -> Path:
    """Where a file goes in the quarantine folder ``move_to`` (see the module's notes)."""
    absolute, folder = Path(os.path.abspath(path)), Path(os.path.abspath(move_to))
    try:
        return folder / absolute.relative_to(os.path.abspath(image_root))
    except ValueError:
        return folder / OUTSIDE_ROOT / absolute.relative_to(absolute.anchor)


def check_quarantine_folder(index: Index, move_to: str | os.PathLike) -> Path:
    """``move_to`` as a full path, checked to lie outside the index's image root and index folder.

    Raises:
        ValueError: if it lies inside either.
    """
    folder = Path(os.path.abspath(move_to))
    for inside, why in ((index.image_root, "`dim-search add` would index the moved copies again"),
                        (Path(os.path.abspath(index.directory)), "it holds the index's own files")):
        if folder.is_relative_to(inside):
            raise ValueError(f"the quarantine folder {folder} is inside {inside}: {why}; choose a folder outside it")
    return folder


def quarantine_targets(
    index: Index, decisions: Sequence[Decision], move_to: str | os.PathLike
) -> list[tuple[GroupImage, Path]]:
    """Check that ``decisions`` can be applied now, and say where each moved file would go (``--dry-run``).

    Raises:
        ValueError: if ``move_to`` lies inside the image root, an image changed in the
            index since the groups were found, a file is named twice or a keeper is moved.
        FileNotFoundError: if a keeper's or a moved copy's file is gone.
        FileExistsError: if a file's place in the quarantine folder is taken.
    """
    folder = check_quarantine_folder(index, move_to)
    seen: set[int] = set()
    targets = []
    for decision in decisions:
        for image in (decision.keeper, *decision.moved):
            try:
                current = index.path_of(image.id)
            except KeyError:
                current = None
            if current != image.path:
                raise ValueError(f"image {image.id} ({image.path}) changed in the index since the groups were found; "
                                 "find them again")
            if image.id in seen:
                raise ValueError(
                    f"image {image.id} ({image.path}) is in two decisions; each copy is kept or moved once"
                )
            seen.add(image.id)
            if not os.path.lexists(image.path):
                raise FileNotFoundError(f"{image.path} is gone; find the groups again")
        for image in decision.moved:
            target = quarantine_path(index.image_root, image.path, folder)
            if os.path.lexists(target):
                raise FileExistsError(
                    f"{target} already exists: undo the earlier cleanup (`dim-search undo {index.directory}`) "
                    "or choose another quarantine folder"
                )
            targets.append((image, target))
    if len({target for _, target in targets}) != len(targets):
        raise ValueError("two moved files would share a place in the quarantine folder; choose another folder")
    return targets


# ---------------------------------------------------------------------- journals


def journals(index_dir: str | os.PathLike) -> list[Journal]:
    """The cleanups of an index that can be undone or are unfinished, oldest first."""
    folder = Path(index_dir) / JOURNAL_DIR
    numbered = sorted((int(path.name), path) for path in folder.glob("*") if path.name.isdigit() and path.is_dir())
    return [Journal.read(path) for _, path in numbered if (path / JOURNAL_FILE).is_file()]


def interrupted(index_dir: str | os.PathLike) -> Journal | None:
    """The cleanup a crash interrupted (an apply or an undo), if any."""
    return next((journal for journal in reversed(journals(index_dir)) if journal.state != "applied"), None)


def finish_interrupted(index: Index, wait: bool = True) -> Journal | None:
    """Finish a cleanup that a crash interrupted: an apply is completed, an undo too.

    Args:
        index: the index (written only if a cleanup was interrupted).
        wait: wait for another writer (see :meth:`retrieval.Index.build`).

    Returns:
        The journal finished, or ``None`` when there was none.
    """
    if interrupted(index.directory) is None:
        return None
    with index.writing(wait=wait):
        return _finish(index)


def apply(index: Index, decisions: Sequence[Decision], move_to: str | os.PathLike, wait: bool = True) -> Journal | None:
    """Move every copy named in ``decisions`` into ``move_to`` and take it out of the index.

    An interrupted cleanup is finished first. Then the plan is checked
    (:func:`quarantine_targets`), the journal written, the files moved, and the
    index rewritten without them, all under the index's lock.

    Args:
        index: the index the groups were found in; it is updated in place.
        decisions: from :func:`plan_moves` or :func:`decide`.
        move_to: the quarantine folder (created if needed), outside the image root.
        wait: wait for another writer (see :meth:`retrieval.Index.build`).

    Returns:
        The journal (state ``applied``), or ``None`` when there was nothing to move.
    """
    folder = Path(os.path.abspath(move_to))
    with index.writing(wait=wait):
        _finish(index)
        if not any(decision.moved for decision in decisions):
            return None
        targets = quarantine_targets(index, decisions, folder)
        keeper_of = {image.id: decision.keeper.id for decision in decisions for image in decision.moved}
        moves = [
            Move(index.record(image.id), image.path, str(target), file_sha256(image.path), keeper_of[image.id])
            for image, target in targets
        ]
        vectors = np.stack([index.vector_of(move.record.id) for move in moves])  # (M, D)
        journal = _start(index.directory, folder, moves, vectors)
        _roll_forward(index, journal)
    return journal


def undo(index: Index, wait: bool = True) -> Journal | None:
    """Put back the files of the newest cleanup (or roll back an interrupted one), and into the index.

    Every file returns to its place, byte-identical (its SHA-256 is checked first),
    and its image returns to the index with its stored vector and, unless another
    image took it since, its id. Nothing is changed when a file cannot go back:
    its place is taken by another file, or its copy in the quarantine folder changed.

    Returns:
        The journal undone (its folder is deleted), or ``None`` when there was nothing to undo.

    Raises:
        FileExistsError: if a file's place is taken by another file.
        ValueError: if a quarantined file changed since it was moved.
        FileNotFoundError: if a file is neither in its place nor in the quarantine folder.
    """
    with index.writing(wait=wait):
        _discard_unstarted(index.directory)
        found = journals(index.directory)
        journal = interrupted(index.directory) or (found[-1] if found else None)
        if journal is not None:
            _roll_back(index, journal)
    return journal


# ---------------------------------------------------------------------- steps (under the index's lock)


def _finish(index: Index) -> Journal | None:
    _discard_unstarted(index.directory)
    journal = interrupted(index.directory)
    if journal is not None:
        (_roll_forward if journal.state == "applying" else _roll_back)(index, journal)
    return journal


def _discard_unstarted(index_dir: Path) -> None:
    """Delete journal folders without a journal: a cleanup that stopped before it moved anything."""
    for path in (index_dir / JOURNAL_DIR).glob("*"):
        if path.name.isdigit() and path.is_dir() and not (path / JOURNAL_FILE).is_file():
            shutil.rmtree(path)


def _start(index_dir: Path, move_to: Path, moves: list[Move], vectors: np.ndarray) -> Journal:
    """Write a new journal (vectors first, journal.json last: its existence marks the cleanup as started)."""
    parent = index_dir / JOURNAL_DIR
    numbers = [int(path.name) for path in parent.glob("*") if path.name.isdigit()]
    directory = parent / str(max(numbers, default=0) + 1)
    directory.mkdir(parents=True)
    _fsync_directory(parent)

    def write_vectors(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(vectors, dtype=np.float32))
            handle.flush()
            os.fsync(handle.fileno())

    atomic_write(directory / VECTORS_FILE, write_vectors)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    journal = Journal(directory, "applying", str(move_to), created, moves)
    journal.save()
    return journal


def _indexed(index: Index, record: ImageRecord) -> bool:
    """Whether the index holds this image, under its id and path."""
    try:
        return index.record(record.id).path == record.path
    except KeyError:
        return False


def _roll_forward(index: Index, journal: Journal) -> None:
    """Move every file of ``journal`` into the quarantine folder, take the images out, mark it applied."""
    for move in journal.moves:
        _put(Path(move.source), Path(move.target), move.sha256)
    for folder in {Path(path).parent for move in journal.moves for path in (move.source, move.target)}:
        _fsync_directory(folder)  # the renames are on disk before the index forgets the images
    still = [move.record.id for move in journal.moves if _indexed(index, move.record)]
    if still:
        index.remove(still)
    journal.state = "applied"
    journal.save()


def _roll_back(index: Index, journal: Journal) -> None:
    """Move every file of ``journal`` back, put the images back into the index, delete the journal."""
    for move in journal.moves:
        _check_can_go_back(move)
    journal.state = "undoing"
    journal.save()
    for move in reversed(journal.moves):
        _put(Path(move.target), Path(move.source), move.sha256)
    for folder in {Path(move.source).parent for move in journal.moves}:
        _fsync_directory(folder)
    vectors = journal.vectors()
    used = {record.id for record in index.records}
    indexed = {record.path for record in index.records}
    next_id = max(used | {move.record.id for move in journal.moves}) + 1
    records, rows = [], []
    for row, move in enumerate(journal.moves):
        if move.record.path in indexed:
            continue  # never taken out (an interrupted apply), or put back by an interrupted undo
        record = move.record
        if record.id in used:  # an add took the id meanwhile
            record, next_id = replace(record, id=next_id), next_id + 1
        records.append(record)
        rows.append(row)
    index.insert(records, vectors[rows])
    _remove_empty_folders([Path(move.target).parent for move in journal.moves], Path(journal.move_to))
    shutil.rmtree(journal.directory)


def _check_can_go_back(move: Move) -> None:
    """Raise, before anything is changed, if ``move``'s file could not be put back as it was."""
    source, target = Path(move.source), Path(move.target)
    if os.path.lexists(source):
        if os.path.lexists(target) and file_sha256(source) != move.sha256:
            raise FileExistsError(f"{source} is taken by another file, so {target} cannot go back; "
                                  "move that file away, then undo again")
        return  # back already (or never moved)
    if not target.is_file():
        raise FileNotFoundError(f"{source} is neither in its place nor at {target} in the quarantine folder")
    if file_sha256(target) != move.sha256:
        raise ValueError(f"{target} changed since it was moved, so undo does not put it back as {source}; "
                         "restore it by hand, or put the moved file back at that path and undo again")


def _put(source: Path, target: Path, sha256: str) -> None:
    """Make the file be at ``target`` and not at ``source``, whatever part of this move was done before."""
    if not os.path.lexists(source):
        if os.path.lexists(target):
            return  # moved before
        raise FileNotFoundError(f"{source} is gone and is not at {target} either")
    if os.path.lexists(target):
        if target.is_file() and file_sha256(target) == sha256:
            source.unlink()  # a copy across file systems was complete; its source was not removed yet
            return
        raise FileExistsError(f"{target} exists and is another file; move it away, then run the command again")
    _move_file(source, target)


def _move_file(source: Path, target: Path) -> None:
    """Move one file to a place that is free: a rename, or across file systems a synced copy, renamed
    into place (:func:`dim.core.atomic.atomic_write`), then the removal of the source."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(source, target)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        atomic_write(target, lambda tmp: _copy_synced(source, Path(tmp)))
        _fsync_directory(target.parent)
        source.unlink()


def _copy_synced(source: Path, destination: Path) -> None:
    shutil.copy2(source, destination)
    with open(destination, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_directory(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # a folder that is gone, or a system without directory handles
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a directory
    finally:
        os.close(fd)


def _remove_empty_folders(folders: list[Path], stop: Path) -> None:
    """Remove the emptied folders of the quarantine tree, up to (not including) ``stop``."""
    for folder in sorted(set(folders), key=lambda path: len(path.parts), reverse=True):
        while folder != stop and folder.is_relative_to(stop):
            try:
                folder.rmdir()
            except OSError:
                break  # not empty
            folder = folder.parent
