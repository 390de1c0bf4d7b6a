"""Small file-system helpers that never leave a half-written file behind."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write to a temporary file beside `path`, fsync it, then rename over `path`."""
    return atomic_write_bytes(path, text.encode(), sync_dir=False)


def atomic_write_bytes(path: str | Path, data: bytes, *, sync_dir: bool = True) -> Path:
    """Like atomic_write_text; with `sync_dir` the rename itself is made durable too."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 would hide the file from a service user
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)
    return path


def fsync_dir(folder: str | Path) -> None:
    """Make a rename or a new file in `folder` durable (best effort where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some network file systems refuse fsync on a folder
        pass
    finally:
        os.close(fd)


_UMASK: int | None = None
_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read once: the watcher, the DICOM store and exports never change it.

    Reading it by setting it (os.umask) and back is not atomic: threads doing it at once left the
    umask at 0 for good, and every later file world-writable. So it is read from /proc where Linux
    shows it, and otherwise set-and-restored exactly once, under a lock, on first use.
    """
    global _UMASK
    with _UMASK_LOCK:
        if _UMASK is None:
            _UMASK = _proc_umask()
            if _UMASK is None:
                _UMASK = os.umask(0o077)  # a strict mask for the instant it is out, never 0
                os.umask(_UMASK)
        return _UMASK


def _proc_umask() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None  # not Linux, or a kernel before 4.7


def atomic_write_json(path: str | Path, data) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2) + "\n")
