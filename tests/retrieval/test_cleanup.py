"""Keep-best rules, quarantine moves with their journal, undo, and what a crash in the middle leaves."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from retrieval import cleanup
from retrieval.cleanup import KEEP_RULES, Decision, choose_keeper, decide, plan_moves
from retrieval.cli import main
from retrieval.dedup import DuplicateGroup, GroupImage, find_duplicates
from retrieval.index import Index
from retrieval.lock import LOCK_FILE, read_holder
from tests.retrieval.conftest import thumbnail_model

REPOSITORY = Path(__file__).resolve().parents[2]
DEADLINE_SECONDS = 120
EXTRA_COPIES = {"copies/photo07-copy.png": "b/photo07.png", "copies/photo09-copy.png": "b/photo09.png"}


def image(
    image_id: int, path: str, pixels: tuple[int, int] | None = (10, 10), size: int | None = 100, modified: float = 0.0
) -> GroupImage:
    """A hand-made group member; ``size=None`` is a file that is gone."""
    width, height = pixels if pixels else (None, None)
    return GroupImage(image_id, path, 1.0, size, width, height, None if size is None else modified, None)


def group(*images: GroupImage) -> DuplicateGroup:
    return DuplicateGroup(list(images), [])


def kept(members: DuplicateGroup, keep: str, prefer: str | None = None) -> int | None:
    keeper = choose_keeper(members, keep, prefer)
    return None if keeper is None else keeper.id


# ---------------------------------------------------------------------- rules


def test_largest_is_most_pixels_then_bytes_then_the_shorter_path() -> None:
    assert kept(group(image(1, "/p/a.jpg", (10, 10), 900), image(2, "/p/b.jpg", (20, 10), 100)), "largest") == 2
    assert kept(group(image(1, "/p/a.jpg", (20, 10), 100), image(2, "/p/b.jpg", (10, 20), 101)), "largest") == 2
    tie = [image(1, "/p/long-name.jpg"), image(2, "/p/b.jpg"), image(3, "/p/a.jpg")]
    assert kept(group(*tie), "largest") == 3 and kept(group(*reversed(tie)), "largest") == 3  # order never matters
    assert kept(group(image(1, "/p/a.jpg", None, 500), image(2, "/p/b.jpg", (1, 1), 1)), "largest") == 2


def test_newest_oldest_and_shortest_path() -> None:
    members = group(image(1, "/photos/2019/a.jpg", modified=300.0), image(2, "/photos/b.jpg", modified=100.0),
                    image(3, "/photos/2020/c.jpg", modified=200.0), image(4, "/photos/d.jpg", modified=100.0))
    assert [kept(members, rule) for rule in ("newest", "oldest", "shortest-path")] == [1, 2, 2]


def test_prefer_keeps_a_copy_under_the_folder_when_the_group_has_one(tmp_path: Path) -> None:
    originals = tmp_path / "originals"
    members = group(image(1, str(tmp_path / "a.jpg"), (50, 50)), image(2, str(originals / "sub" / "a.jpg"), (10, 10)),
                    image(3, str(originals / "b.jpg"), (20, 20)))
    assert kept(members, "largest") == 1
    assert kept(members, "largest", prefer=str(originals)) == 3  # the largest of those under the folder
    assert kept(members, "largest", prefer=str(tmp_path / "elsewhere")) == 1  # none there: the rule over all
    assert kept(members, "largest", prefer=str(tmp_path / "orig")) == 1  # a folder, not a prefix of names


def test_gone_files_are_never_kept_or_moved_and_bad_rules_are_refused() -> None:
    members = group(image(1, "/p/a.jpg", (90, 90), size=None), image(2, "/p/b.jpg"), image(3, "/p/c.jpg"))
    (decision,) = plan_moves([members], "largest")
    assert decision.keeper.id == 2 and [moved.id for moved in decision.moved] == [3]
    assert plan_moves([group(image(1, "/p/a.jpg", size=None), image(2, "/p/b.jpg"))]) == []  # nothing to move
    assert kept(group(image(1, "/p/a.jpg", size=None), image(2, "/p/b.jpg", size=None)), "newest") is None
    with pytest.raises(ValueError, match="keep must be one of largest, newest, oldest, shortest-path; got 'biggest'"):
        choose_keeper(members, "biggest")
    assert KEEP_RULES == ("largest", "newest", "oldest", "shortest-path")


def test_hand_choices_are_checked_against_the_groups() -> None:
    groups = [group(image(1, "/p/a"), image(2, "/p/b"), image(3, "/p/c")), group(image(4, "/p/d"), image(5, "/p/e"))]
    (decision,) = decide(groups, [(2, [3])])
    assert decision.keeper.id == 2 and [moved.id for moved in decision.moved] == [3]  # image 1 stays untouched
    for choices, message in [
        ([(9, [1])], "image 9 is in no duplicate group"),
        ([(1, [4])], "image 4 is not another copy in the group of image 1"),
        ([(1, [1])], "image 1 is not another copy"),
        ([(1, [])], "moves nothing"),
        ([(1, [2]), (3, [2])], "image 2 is named in two choices"),
    ]:
        with pytest.raises(ValueError, match=message):
            decide(groups, choices)
    gone = [group(image(1, "/p/a"), image(2, "/p/b", size=None))]
    with pytest.raises(ValueError, match="the file of image 2 is gone"):
        decide(gone, [(1, [2])])


# ---------------------------------------------------------------------- moves on a real index


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``folder``."""
    return {path.relative_to(folder).as_posix(): sha256(path) for path in sorted(folder.rglob("*")) if path.is_file()}


def copies_of(files: dict[str, str]) -> dict[str, str]:
    """The entries of :func:`snapshot` under ``copies/``: what every rule moves in these tests."""
    return {name: digest for name, digest in files.items() if name.startswith("copies/")}


def rows(index_dir: Path) -> list[tuple[int, str, int, float]]:
    """The index as it is on disk: its metadata rows, by id."""
    index = Index.load(index_dir, model=thumbnail_model())
    return sorted((record.id, record.path, record.size, record.mtime) for record in index.records)


@pytest.fixture
def index(duplicates_dir: Path, tmp_path: Path) -> Index:
    """The planted near-duplicates plus two exact copies: 16 images, 4 groups, 4 copies to move by any rule."""
    for copy, original in EXTRA_COPIES.items():
        shutil.copy(duplicates_dir / original, duplicates_dir / copy)
    return Index.build(thumbnail_model(), duplicates_dir, tmp_path / "index", num_workers=0)


def moved_paths(decisions: list[Decision]) -> list[str]:
    return [image.path for decision in decisions for image in decision.moved]


def test_apply_moves_into_quarantine_and_undo_restores_bytes_and_index(
    index: Index, duplicates_dir: Path, tmp_path: Path
) -> None:
    before_files, before_rows = snapshot(duplicates_dir), rows(index.directory)
    before_vectors = {record.id: index.vector_of(record.id) for record in index.records}
    decisions = plan_moves(find_duplicates(index), keep="largest")
    assert sorted(Path(path).relative_to(duplicates_dir).as_posix() for path in moved_paths(decisions)) == [
        "copies/photo00-small.png", "copies/photo03.jpg", "copies/photo07-copy.png", "copies/photo09-copy.png",
    ]
    quarantine = tmp_path / "quarantine"
    journal = cleanup.apply(index, decisions, quarantine)

    assert journal.state == "applied" and journal.directory == index.directory / "cleanups" / "1"
    moved = copies_of(before_files)
    assert snapshot(quarantine) == moved
    assert snapshot(duplicates_dir) == {name: digest for name, digest in before_files.items() if name not in moved}
    on_disk = rows(index.directory)
    assert [row for row in before_rows if not row[1].startswith("copies/")] == on_disk
    assert len(index) == len(on_disk) == 12 and find_duplicates(index) == []
    written = json.loads((journal.directory / "journal.json").read_text())
    assert written["state"] == "applied" and len(written["moves"]) == 4
    assert all(move["sha256"] == before_files[move["path"]] for move in written["moves"])

    undone = cleanup.undo(index)
    assert (undone.directory, undone.moves) == (journal.directory, journal.moves)
    assert snapshot(duplicates_dir) == before_files  # every file back, byte-identical
    assert rows(index.directory) == before_rows  # and back in the index, under its id
    reloaded = Index.load(index.directory, model=thumbnail_model())
    for image_id, vector in before_vectors.items():
        np.testing.assert_array_equal(reloaded.vector_of(image_id), vector)
    assert not journal.directory.exists() and list(quarantine.iterdir()) == []  # emptied folders removed
    assert cleanup.undo(index) is None  # nothing left to undo


def test_remove_and_insert_write_only_under_the_lock_and_keep_an_hnsw_index_searchable(
    duplicates_dir: Path, tmp_path: Path
) -> None:
    index = Index.build(thumbnail_model(), duplicates_dir, tmp_path / "hnsw", index_type="hnsw", num_workers=0)
    first = index.records[0]
    with pytest.raises(RuntimeError, match="call it inside `with index.writing\\(\\):`"):
        index.remove([first.id])
    expected = index.vector_of(first.id)
    with index.writing():
        (vector,) = index.remove([first.id])
        with pytest.raises(KeyError, match=f"no image with id {first.id}"):
            index.remove([first.id])
        with pytest.raises(ValueError, match="is in .* already"):
            index.insert([index.records[0]], vector[None])
        index.insert([first], vector[None])
    np.testing.assert_array_equal(vector, expected)
    reloaded = Index.load(index.directory, model=thumbnail_model())
    assert reloaded.index_type == "hnsw" and rows(index.directory)[0] == (first.id, first.path, first.size, first.mtime)
    for record in reloaded.records:  # every image is still found as its own nearest neighbour
        assert reloaded.neighbours_of(record.id, k=1).neighbours[0].id == record.id


def test_undo_takes_cleanups_back_newest_first(index: Index, duplicates_dir: Path, tmp_path: Path) -> None:
    before = snapshot(duplicates_dir)
    cleanup.apply(index, plan_moves(find_duplicates(index))[:2], tmp_path / "q1")
    cleanup.apply(index, plan_moves(find_duplicates(index)), tmp_path / "q2")  # the other two groups
    assert [journal.number for journal in cleanup.journals(index.directory)] == [1, 2]
    assert cleanup.undo(index).move_to == str(tmp_path / "q2")
    assert snapshot(tmp_path / "q1") and not snapshot(tmp_path / "q2")
    assert cleanup.undo(index).move_to == str(tmp_path / "q1")
    assert snapshot(duplicates_dir) == before and len(index) == 16


def test_apply_refuses_what_could_recurse_collide_or_be_stale(
    index: Index, duplicates_dir: Path, tmp_path: Path
) -> None:
    before = snapshot(duplicates_dir)
    decisions = plan_moves(find_duplicates(index))
    with pytest.raises(ValueError, match="inside .*photos: `dim-search add` would index the moved copies again"):
        cleanup.apply(index, decisions, duplicates_dir / "quarantine")
    with pytest.raises(ValueError, match="it holds the index's own files"):
        cleanup.apply(index, decisions, index.directory / "q")
    taken = tmp_path / "q" / "copies" / "photo03.jpg"
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"another file of that name")
    with pytest.raises(FileExistsError, match=f"{taken} already exists"):
        cleanup.apply(index, decisions, tmp_path / "q")
    assert snapshot(duplicates_dir) == before and len(index) == 16  # nothing moved
    assert cleanup.journals(index.directory) == []

    cleanup.apply(index, decisions[:1], tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="changed in the index since the groups were found"):
        cleanup.apply(index, decisions, tmp_path / "elsewhere")  # the first group's copy has left the index


def fail_after(count: int, monkeypatch, *, copy_first: bool = False) -> None:
    """Make the move of the file after ``count`` moves fail, as a crash would stop it.

    With ``copy_first``, the failing move has copied the file but not removed its source
    (a move across file systems killed between its two steps).
    """
    real, done = cleanup._move_file, []

    def move(source: Path, target: Path) -> None:
        if len(done) == count:
            if copy_first:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
            raise OSError("simulated crash")
        real(source, target)
        done.append(source)

    monkeypatch.setattr(cleanup, "_move_file", move)


@pytest.mark.parametrize("copy_first", [False, True], ids=["renamed", "copied-not-removed"])
@pytest.mark.parametrize("then", ["resume", "undo"])
def test_an_interrupted_apply_is_resumed_or_rolled_back_with_nothing_lost(
    index: Index, duplicates_dir: Path, tmp_path: Path, monkeypatch, then: str, copy_first: bool
) -> None:
    before_files, before_rows = snapshot(duplicates_dir), rows(index.directory)
    decisions = plan_moves(find_duplicates(index))
    quarantine = tmp_path / "quarantine"
    fail_after(2, monkeypatch, copy_first=copy_first)
    with pytest.raises(OSError, match="simulated crash"):
        cleanup.apply(index, decisions, quarantine)
    monkeypatch.undo()
    journal = cleanup.interrupted(index.directory)
    assert journal is not None and journal.state == "applying" and len(journal.moves) == 4
    assert len(snapshot(quarantine)) == (3 if copy_first else 2)
    assert rows(index.directory) == before_rows  # the index is rewritten only once every file has moved
    assert not (index.directory / LOCK_FILE).exists()
    both = {**snapshot(duplicates_dir), **{name: digest for name, digest in snapshot(quarantine).items()}}
    assert both == before_files  # every file is somewhere, unchanged

    reloaded = Index.load(index.directory, model=thumbnail_model())  # the next command, in a new process
    if then == "resume":
        assert cleanup.finish_interrupted(reloaded).state == "applied"
        assert snapshot(quarantine) == copies_of(before_files)
        assert rows(index.directory) == [row for row in before_rows if not row[1].startswith("copies/")]
        assert cleanup.interrupted(index.directory) is None
    else:
        assert cleanup.undo(reloaded) is not None
        assert snapshot(duplicates_dir) == before_files and not snapshot(quarantine)
        assert rows(index.directory) == before_rows and cleanup.journals(index.directory) == []


KILL_SCRIPT = """
import os, signal, sys
from retrieval import cleanup
from retrieval.dedup import find_duplicates
from retrieval.index import Index
from tests.retrieval.conftest import thumbnail_model
move, done = cleanup._move_file, []
def move_then_die(source, target):
    move(source, target)
    done.append(source)
    if len(done) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
cleanup._move_file = move_then_die
index = Index.load(sys.argv[1], model=thumbnail_model())
cleanup.apply(index, cleanup.plan_moves(find_duplicates(index)), sys.argv[2])
"""


@pytest.mark.parametrize("then", ["resume", "undo"])
def test_a_cleanup_killed_with_sigkill_loses_no_file(
    index: Index, duplicates_dir: Path, tmp_path: Path, then: str
) -> None:
    """A real process, killed with SIGKILL right after its second of four moves."""
    before_files, before_rows = snapshot(duplicates_dir), rows(index.directory)
    quarantine = tmp_path / "quarantine"
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY), "OMP_NUM_THREADS": "1"}
    killed = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(index.directory), str(quarantine)], cwd=REPOSITORY, env=env,
        timeout=DEADLINE_SECONDS,
    )
    assert killed.returncode == -signal.SIGKILL
    holder = read_holder(index.directory / LOCK_FILE)
    assert holder is not None and holder.is_stale()  # it died holding the lock
    assert cleanup.interrupted(index.directory).state == "applying" and len(snapshot(quarantine)) == 2
    assert {**snapshot(duplicates_dir), **snapshot(quarantine)} == before_files

    reloaded = Index.load(index.directory, model=thumbnail_model())
    if then == "resume":
        cleanup.finish_interrupted(reloaded)
        assert snapshot(quarantine) == copies_of(before_files)
        assert rows(index.directory) == [row for row in before_rows if not row[1].startswith("copies/")]
    else:
        cleanup.undo(reloaded)
        assert snapshot(duplicates_dir) == before_files and rows(index.directory) == before_rows
    assert cleanup.interrupted(index.directory) is None and not (index.directory / LOCK_FILE).exists()


def test_an_interrupted_undo_is_finished_and_a_taken_place_refused(
    index: Index, duplicates_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    before_files, before_rows = snapshot(duplicates_dir), rows(index.directory)
    cleanup.apply(index, plan_moves(find_duplicates(index)), tmp_path / "q")
    fail_after(1, monkeypatch)
    with pytest.raises(OSError, match="simulated crash"):
        cleanup.undo(index)
    monkeypatch.undo()
    assert cleanup.interrupted(index.directory).state == "undoing"
    index = Index.load(index.directory, model=thumbnail_model())  # the next command, in a new process
    assert cleanup.finish_interrupted(index) is not None
    assert snapshot(duplicates_dir) == before_files and rows(index.directory) == before_rows

    cleanup.apply(index, plan_moves(find_duplicates(index)), tmp_path / "q")
    (duplicates_dir / "copies" / "photo03.jpg").write_bytes(b"a new file where a moved one was")
    with pytest.raises(FileExistsError, match="photo03.jpg is taken by another file"):
        cleanup.undo(index)
    assert cleanup.journals(index.directory)[0].state == "applied"  # nothing was changed
    assert len(snapshot(tmp_path / "q")) == 4


def test_dedup_move_to_dry_run_then_apply_then_undo_on_the_command_line(
    dim_checkpoint: Path, image_dir: Path, tmp_path: Path
) -> None:
    """The commands, on an index of the one-step DIM model (the command line loads the model from the index)."""
    (image_dir / "kept").mkdir()
    shutil.copy(image_dir / "img001.png", image_dir / "kept" / "img001-copy.png")
    index_dir, quarantine = tmp_path / "index", tmp_path / "quarantine"
    Index.build(dim_checkpoint, image_dir, index_dir, device="cpu", num_workers=0)
    before = snapshot(image_dir)

    def run(*args: str) -> str:
        result = CliRunner().invoke(main, [str(arg) for arg in args])
        assert result.exit_code == 0, result.output
        return result.output

    args = ["dedup", index_dir, "--threshold", "0.99999", "--keep", "shortest-path"]
    dry = run(*args, "--prefer", image_dir / "kept", "--move-to", quarantine, "--dry-run")
    assert f"would move 1 copies of 1 groups to {quarantine}:" in dry
    assert f"\n  {image_dir / 'img001.png'} -> {quarantine / 'img001.png'}\n" in dry
    assert snapshot(image_dir) == before and not quarantine.exists()
    moved = run(*args, "--move-to", quarantine)
    assert f"moved 1 copies of 1 groups to {quarantine}" in moved and "the index holds 30 images" in moved
    assert snapshot(quarantine) == {"kept/img001-copy.png": before["kept/img001-copy.png"]}  # the longer path
    assert run("undo", index_dir) == f"put back 1 files from {quarantine}; the index holds 31 images\n"
    assert snapshot(image_dir) == before
    assert run("undo", index_dir).startswith("nothing to undo")
    bad = CliRunner().invoke(main, ["dedup", str(index_dir), "--keep", "biggest"])
    assert bad.exit_code != 0 and "'largest', 'newest', 'oldest', 'shortest-path'" in bad.output
    bad = CliRunner().invoke(main, ["dedup", str(index_dir), "--dry-run"])
    assert bad.exit_code != 0 and "give --move-to DIR too" in bad.output
