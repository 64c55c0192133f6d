"""One writer at a time: a lock file in the index directory, in the manner of git's ``index.lock``.

``build`` and ``add`` hold :class:`IndexLock` while they embed and write. The lock
is the file ``write.lock``, created atomically (written in full under a temporary
name, then hard-linked into place, which fails if a lock already exists), and it
names its holder: process id, host name, start time and command. A second writer
waits for it (printing once who holds it) or, with ``wait=False``, gives up with
:class:`IndexLockedError`.

A lock whose holder died is *stale*: when the lock names this host and its process
id no longer runs, the next writer removes it and goes on. A lock taken on another
host (an index on a network drive) cannot be checked; the message says which file
to delete once you are sure its writer has gone.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

LOCK_FILE = "write.lock"
POLL_SECONDS = 0.2


class IndexLockedError(RuntimeError):
    """Another writer holds the index's lock (and ``wait`` was false, or the wait timed out)."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock: what ``write.lock`` says.

    Attributes:
        pid: the holder's process id.
        host: the host it runs on (``socket.gethostname()``).
        since: when it took the lock (ISO 8601, UTC).
        command: its command line, for the message.
        token: a random id that tells this taking of the lock from any other.
    """

    pid: int
    host: str
    since: str
    command: str
    token: str

    def describe(self) -> str:
        return f"process {self.pid} on {self.host} ({self.command!r}, since {self.since})"

    def is_stale(self) -> bool:
        """True when the holder ran on this host and its process has ended."""
        return self.host == socket.gethostname() and not _process_alive(self.pid)


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def read_holder(path: Path) -> LockHolder | None:
    """The holder named by the lock file at ``path``; ``None`` if there is none, or it cannot be parsed."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return LockHolder(int(data["pid"]), str(data["host"]), str(data["since"]), str(data["command"]), data["token"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        # Created by link() from a complete file, so a lock is never half-written; treat junk as
        # held by nobody we could wait for, and let the message name the file.
        return LockHolder(-1, "unknown", "unknown", f"unreadable {path.name}", "")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class IndexLock:
    """Hold ``DIRECTORY/write.lock`` for the duration of a ``with`` block.

    Args:
        directory: the index directory (created if needed).
        wait: wait for another writer to finish; if false, raise :class:`IndexLockedError` at once.
        timeout: give up waiting after this many seconds (``None``: wait as long as it takes).
        on_wait: called with one message when this writer starts to wait or removes
            a stale lock (default: print to stderr).

    Raises:
        IndexLockedError: when the lock is held and ``wait`` is false or ``timeout`` passes.

    Example:
        >>> with IndexLock("photos.idx"):
        ...     ...  # write the index files
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        wait: bool = True,
        timeout: float | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self.wait = wait
        self.timeout = timeout
        self.on_wait = on_wait or _stderr
        self.holder: LockHolder | None = None

    def __enter__(self) -> IndexLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, waiting (or not) as configured."""
        self.directory.mkdir(parents=True, exist_ok=True)
        me = LockHolder(
            os.getpid(),
            socket.gethostname(),
            datetime.now(timezone.utc).isoformat(timespec="seconds"),
            " ".join(sys.argv) or "python",
            uuid.uuid4().hex,
        )
        started, told = time.monotonic(), False
        while not self._try_create(me):
            holder = read_holder(self.path)
            if holder is None:  # released between our attempt and the read
                continue
            if holder.is_stale():
                if self._break(holder):
                    self.on_wait(f"removed a stale lock on {self.directory}: {holder.describe()} has ended")
                continue
            advice = (
                f"if you are sure it has ended, delete {self.path}"
                if holder.host != socket.gethostname() or holder.pid < 0
                else "wait for it to finish"
            )
            if not self.wait:
                raise IndexLockedError(
                    f"{self.directory} is being written by {holder.describe()}; {advice}, "
                    "or run again without --no-wait to wait for it"
                )
            if self.timeout is not None and time.monotonic() - started > self.timeout:
                raise IndexLockedError(
                    f"{self.directory} is still being written by {holder.describe()} after {self.timeout:g} s; {advice}"
                )
            if not told:
                self.on_wait(f"waiting for {holder.describe()}, which is writing {self.directory} ({advice})")
                told = True
            time.sleep(POLL_SECONDS)
        self.holder = me

    def release(self) -> None:
        """Remove the lock file, if it is still ours."""
        if self.holder is not None and read_holder(self.path) == self.holder:
            self.path.unlink(missing_ok=True)
        self.holder = None

    def _try_create(self, me: LockHolder) -> bool:
        """Create the lock file naming ``me``, complete or not at all; False if one exists."""
        tmp = self.directory / f".{LOCK_FILE}.{me.token}.tmp"
        tmp.write_text(json.dumps(asdict(me)) + "\n", encoding="utf-8")
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def _break(self, stale: LockHolder) -> bool:
        """Remove a stale lock, unless another writer replaced it in the meantime."""
        aside = self.directory / f".{LOCK_FILE}.{uuid.uuid4().hex}.stale"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        try:
            if read_holder(aside) == stale:
                return True
            try:  # a live writer took the lock after we read the stale one: put its lock back
                os.link(aside, self.path)
            except FileExistsError:
                pass
            return False
        finally:
            aside.unlink(missing_ok=True)
