"""One watcher per results folder: an exclusive `flock` on `OUT/watch.lock`, which holds its pid.

Two watchers on one results folder would both classify every file (two lines each) and race
each other's archive moves. The lock is released by the kernel when its holder exits, however
it exits, so a crash never leaves a stale lock behind; the file itself stays.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from edgecxr.core.errors import EdgecxrError

LOCK = "watch.lock"


class ResultsLock:
    def __init__(self, out: Path):
        self.path = Path(out) / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise EdgecxrError(f"cannot create the lock file {LOCK} ({exc.strerror or exc})", path=self.path.parent,
                               fix="restore write access to the results folder (--out)") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = lock_holder(self.path.parent)
            raise EdgecxrError(
                f"another watcher (pid {holder if holder else 'unknown'}) already writes to this results folder",
                path=self.path.parent,
                fix="stop that watcher first (systemctl stop edgecxr-watch, or kill its pid), "
                    "or give this one its own --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None


def lock_holder(out: Path) -> int | None:
    """The pid of the watcher holding `out`'s lock, or None when none holds it."""
    path = Path(out) / LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
