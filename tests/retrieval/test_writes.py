"""Writers and readers of one index: the lock, the switch of files as one write, and damaged files."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from retrieval import store
from retrieval.cli import main
from retrieval.index import Index
from retrieval.lock import LOCK_FILE, IndexLock, IndexLockedError, read_holder
from retrieval.store import DamagedIndexError
from tests.retrieval.conftest import NUM_GOOD_IMAGES, tiny_model, write_images

REPOSITORY = Path(__file__).resolve().parents[2]
DEADLINE_SECONDS = 120  # only a hung test waits this long: every wait below ends on an event


@pytest.fixture
def index(model, image_dir: Path, tmp_path: Path) -> Index:
    return Index.build(model, image_dir, tmp_path / "index", num_workers=0)


def dead_pid() -> int:
    """The id of a process that has just ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def plant_lock(directory: Path, pid: int, host: str) -> None:
    holder = {"pid": pid, "host": host, "since": "2024-01-01T00:00:00+00:00", "command": "dim-search add", "token": "t"}
    (directory / LOCK_FILE).write_text(json.dumps(holder))


def test_the_lock_names_its_holder_and_no_wait_refuses(index: Index, image_dir: Path) -> None:
    with IndexLock(index.directory) as lock:
        holder = read_holder(index.directory / LOCK_FILE)
        assert holder == lock.holder
        assert (holder.pid, holder.host) == (os.getpid(), socket.gethostname())
        with pytest.raises(IndexLockedError, match=rf"being written by process {os.getpid()} on {socket.gethostname()}"):
            Index.load(index.directory, model=tiny_model()).add(image_dir, num_workers=0, wait=False)
    assert not (index.directory / LOCK_FILE).exists()


def test_a_stale_lock_is_removed_and_a_foreign_one_is_not(index: Index, image_dir: Path, capsys) -> None:
    write_images(image_dir / "more", 2, seed=4, prefix="new")
    pid = dead_pid()
    plant_lock(index.directory, pid, socket.gethostname())
    assert index.add(image_dir, num_workers=0, wait=False).added == 2
    assert f"removed a stale lock on {index.directory}: process {pid} on {socket.gethostname()}" in capsys.readouterr().err
    assert not (index.directory / LOCK_FILE).exists()

    plant_lock(index.directory, pid, "another-host")  # its process cannot be checked from here
    with pytest.raises(IndexLockedError, match=rf"if you are sure it has ended, delete {index.directory / LOCK_FILE}"):
        index.add(image_dir, num_workers=0, wait=False)
    with pytest.raises(IndexLockedError, match="after 0.3 s"):
        IndexLock(index.directory, timeout=0.3, on_wait=print).acquire()  # waits, then gives up


class WatchedStream(io.StringIO):
    """A ``sys.stderr`` for threads: keeps what is written, and sets ``seen`` once ``text`` appeared ``count`` times."""

    def __init__(self, text: str, count: int) -> None:
        super().__init__()
        self.text, self.count = text, count
        self.seen = threading.Event()
        self._lock = threading.Lock()

    def write(self, chunk: str) -> int:
        with self._lock:
            written = super().write(chunk)
            if self.getvalue().count(self.text) >= self.count:
                self.seen.set()
            return written


def test_two_writers_take_turns_and_the_second_adds_only_what_is_new(
    index: Index, image_dir: Path, monkeypatch
) -> None:
    """The bug this fixes: two concurrent adds both embedded everything and the last overwrote the other."""
    write_images(image_dir / "more", 4, seed=4, prefix="new")
    writers = [Index.load(index.directory, model=tiny_model()) for _ in range(2)]  # both loaded before either adds
    waiting = f"waiting for process {os.getpid()}"
    stderr = WatchedStream(waiting, count=2)
    monkeypatch.setattr(sys, "stderr", stderr)  # where a waiting writer says so
    summaries = []
    with IndexLock(index.directory):  # hold both back until both wait, so they really run at the same time
        threads = [threading.Thread(target=lambda w=w: summaries.append(w.add(image_dir, num_workers=0))) for w in writers]
        for thread in threads:
            thread.start()
        assert stderr.seen.wait(DEADLINE_SECONDS), stderr.getvalue()  # both wait for the lock
    for thread in threads:
        thread.join(DEADLINE_SECONDS)
        assert not thread.is_alive()
    assert sorted(summary.added for summary in summaries) == [0, 4]
    assert stderr.getvalue().count(waiting) == 2  # each told once
    reloaded = Index.load(index.directory, model=tiny_model())
    assert len(reloaded) == NUM_GOOD_IMAGES + 4
    assert len({record.path for record in reloaded.records}) == len({record.id for record in reloaded.records}) == 34


def test_a_writer_killed_while_switching_files_in_is_rolled_forward(index: Index, image_dir: Path) -> None:
    """A real process, killed with SIGKILL right after it renamed the first file of its write into place."""
    write_images(image_dir / "more", 3, seed=4, prefix="new")
    script = """
import os, signal, sys
from retrieval import store
from retrieval.index import Index
from tests.retrieval.conftest import tiny_model
move = store._move_into_place
def move_then_die(staged, target):
    move(staged, target)
    os.kill(os.getpid(), signal.SIGKILL)
store._move_into_place = move_then_die
Index.load(sys.argv[1], model=tiny_model()).add(sys.argv[2], num_workers=0)
"""
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY), "OMP_NUM_THREADS": "1"}
    killed = subprocess.run(
        [sys.executable, "-c", script, str(index.directory), str(image_dir)], cwd=REPOSITORY, env=env,
        timeout=DEADLINE_SECONDS,
    )
    assert killed.returncode == -signal.SIGKILL
    holder = read_holder(index.directory / LOCK_FILE)
    assert holder is not None and holder.pid != os.getpid() and holder.is_stale()
    (staging,) = store.staging_dirs(index.directory)
    assert (staging / store.MANIFEST_FILE).is_file()  # committed, only partly switched in
    old_manifest = store.read_manifest(index.directory)
    moved = [name for name in (store.INDEX_FILE, store.METADATA_FILE, store.SKIPPED_FILE) if not (staging / name).exists()]
    assert len(moved) == 1
    with pytest.raises(DamagedIndexError, match="from another write"):
        store.verify_file(index.directory, moved[0], old_manifest)  # on disk: one new file, an old manifest

    reloaded = Index.load(index.directory, model=tiny_model())  # finishes the write, then reads it
    assert len(reloaded) == NUM_GOOD_IMAGES + 3 and not store.staging_dirs(index.directory)
    assert not (index.directory / LOCK_FILE).exists()
    hit = reloaded.search(image_dir / "more" / "new001.png", k=1)[0].neighbours[0]
    assert Path(hit.path) == image_dir / "more" / "new001.png"


def test_a_write_that_fails_before_it_commits_leaves_the_previous_index(
    index: Index, image_dir: Path, monkeypatch
) -> None:
    write_images(image_dir / "more", 3, seed=4, prefix="new")
    before = (index.directory / store.INDEX_FILE).read_bytes()

    def disk_full(records):
        def write(path: Path) -> None:
            path.write_text("id,path,si")
            raise OSError(28, "No space left on device")

        return write

    monkeypatch.setattr(store, "metadata_writer", disk_full)
    with pytest.raises(OSError, match="No space left"):
        index.add(image_dir, num_workers=0)
    monkeypatch.undo()
    assert (index.directory / store.INDEX_FILE).read_bytes() == before
    assert not store.staging_dirs(index.directory) and not (index.directory / LOCK_FILE).exists()
    assert len(Index.load(index.directory, model=tiny_model())) == NUM_GOOD_IMAGES

    leftover = index.directory / f"{store.STAGING_PREFIX}killed"  # what a writer killed while staging leaves
    leftover.mkdir()
    (leftover / store.INDEX_FILE).write_bytes(b"half a file")
    assert len(Index.load(index.directory, model=tiny_model())) == NUM_GOOD_IMAGES  # ignored by readers
    assert Index.load(index.directory, model=tiny_model()).add(image_dir, num_workers=0).added == 3
    assert not leftover.exists()  # discarded by the next writer


def test_a_truncated_faiss_file_is_refused_with_what_to_do(index: Index, image_dir: Path) -> None:
    path = index.directory / store.INDEX_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DamagedIndexError, match=rf"{path} is truncated or from another write") as caught:
        Index.load(index.directory, model=tiny_model())
    assert f"dim-search build {image_dir} --index {index.directory} --model MODEL --overwrite" in str(caught.value)
    result = CliRunner().invoke(main, ["query", str(index.directory), str(image_dir / "img001.png")])
    assert result.exit_code != 0 and "index.faiss is truncated" in result.output and "Traceback" not in result.output


def test_files_of_two_writes_or_damaged_bytes_are_refused(index: Index, image_dir: Path, tmp_path: Path) -> None:
    earlier = tmp_path / "earlier"
    shutil.copytree(index.directory, earlier)
    write_images(image_dir / "more", 2, seed=4, prefix="new")
    index.add(image_dir, num_workers=0)
    shutil.copy(earlier / store.INDEX_FILE, index.directory / store.INDEX_FILE)  # an index.faiss of the write before
    with pytest.raises(DamagedIndexError, match="index.faiss is truncated or from another write"):
        Index.load(index.directory, model=tiny_model())

    shutil.copytree(earlier, tmp_path / "flipped")
    metadata = tmp_path / "flipped" / store.METADATA_FILE
    metadata.write_bytes(metadata.read_bytes().replace(b"img001.png", b"img00l.png"))  # same length and ids
    with pytest.raises(DamagedIndexError, match="metadata.csv is damaged or from another write"):
        Index.load(tmp_path / "flipped", model=tiny_model())


def test_readers_never_see_a_half_switched_index(index: Index, image_dir: Path) -> None:
    counts, errors, done, reading = set(), [], threading.Event(), threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                counts.add(len(Index.load(index.directory, model=index.model)))
            except Exception as error:  # noqa: BLE001 - the test reports any failure
                errors.append(error)
            reading.set()

    reader = threading.Thread(target=read)
    reader.start()
    try:
        assert reading.wait(DEADLINE_SECONDS)  # the reader is at work before the first write
        for round_number in range(3):
            write_images(image_dir / f"round{round_number}", 2, seed=10 + round_number, prefix="r")
            index.add(image_dir, num_workers=0)
    finally:
        done.set()
        reader.join(DEADLINE_SECONDS)
    assert not reader.is_alive()
    assert not errors, errors
    assert counts <= {NUM_GOOD_IMAGES + 2 * n for n in range(4)} and counts
