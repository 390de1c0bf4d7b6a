"""The `.NAME.partial-*` folder an export writes into: cleaned when the export is stopped or killed.

SIGTERM (systemctl stop, kill, a CI timeout) is turned into an exception, so the export's own
cleanup removes the folder. SIGKILL and power loss cannot be caught: each partial folder records
its owner (host, pid, process start time), and the next export to the same destination removes
the ones whose owner is gone. A folder owned by a live export, by another computer (a shared
folder), or with no record (an older edgecxr) is left alone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

OWNER = ".owner.json"


class Terminated(SystemExit):
    """SIGTERM during an export: exit status 143 (128 + 15), as if the signal had killed it."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


@contextmanager
def on_sigterm_raise() -> Iterator[None]:
    """Inside the block, SIGTERM raises Terminated (once; a second SIGTERM kills as usual)."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a cleanup that hangs can still be stopped
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def claim(folder: Path, release: bool = False) -> None:
    """Record this process as `folder`'s owner; `release` removes the record before the folder becomes the bundle."""
    path = folder / OWNER
    if release:
        path.unlink(missing_ok=True)
        return
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid())}))


def remove_stale(out: Path) -> list[Path]:
    """Remove `out`'s partial folders whose owner process is gone; returns the ones removed."""
    removed = []
    for folder in sorted(out.parent.glob(f".{out.name}.partial-*")):
        if folder.is_symlink() or not folder.is_dir():
            continue
        try:
            owner = json.loads((folder / OWNER).read_text())
            host, pid, start = owner["host"], int(owner["pid"]), owner.get("start")
        except (OSError, ValueError, KeyError, TypeError):
            continue  # no record: not ours to judge
        if host != socket.gethostname() or _alive(pid, start):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(folder)
    return removed


def _alive(pid: int, start: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    # the pid may have been reused by a newer process since: compare start times where Linux shows them
    return start is None or _start_time(pid) in (None, start)


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None off Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None
