"""Writing received instances into the inbox so the folder watcher sees each one whole, once.

An instance goes to `INBOX/<StudyInstanceUID>/<SOPInstanceUID>.dcm` through a dot-named
temporary file (the watcher's scanner skips dot names), fsynced with its folder and then
renamed; only after the rename does the scanner get its success status. A crash can leave
only a dot-named temporary file, removed at the next start. UIDs become path parts, so
anything but digits and dots is refused.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from edgecxr.core.fsutil import current_umask, fsync_dir

UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
TEMP_SUFFIX = ".receiving"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Stored:
    """What became of one instance: `status` is the DIMSE status the scanner gets."""

    status: int
    outcome: str  # stored | duplicate | invalid_uid | disk_floor | write_failed
    comment: str = ""


def valid_uid(value: str) -> bool:
    return len(value) <= 64 and bool(UID.match(value))


class InboxStore:
    def __init__(self, inbox: Path, min_free_mb: float):
        self.inbox = inbox
        self.min_free_bytes = int(min_free_mb * MIB)
        self.mode = 0o666 & ~current_umask()
        self._rename_lock = threading.Lock()  # one instance sent on two associations at once: one copy

    def remove_stale_temporaries(self) -> int:
        """Dot-named temporaries of a listener that was killed mid-write; never complete, never read."""
        removed = 0
        for path in self.inbox.glob(f"*/.*{TEMP_SUFFIX}"):
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    def store(self, study_uid: str, sop_uid: str, data: bytes) -> Stored:
        for name, uid in (("StudyInstanceUID", study_uid), ("SOPInstanceUID", sop_uid)):
            if not valid_uid(uid):
                return Stored(0xC000, "invalid_uid", f"{name} is not a valid UID")
        target = self.inbox / study_uid / f"{sop_uid}.dcm"
        if target.exists():
            return Stored(0x0000, "duplicate")  # already durable: acknowledge, keep the first copy
        if shutil.disk_usage(self.inbox).free - len(data) < self.min_free_bytes:
            return Stored(0xA700, "disk_floor", "Out of resources: disk space below the floor")
        try:
            written = self._write(target, data)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                return Stored(0xA700, "disk_floor", "Out of resources: disk full")
            code = errno.errorcode.get(exc.errno, "I/O error") if exc.errno is not None else "I/O error"
            return Stored(0xC001, "write_failed", f"Cannot write: {code}")
        return Stored(0x0000, "stored" if written else "duplicate")

    def _write(self, target: Path, data: bytes) -> bool:
        """False when the same instance, arriving on another association meanwhile, was renamed first."""
        folder = target.parent
        if not folder.is_dir():
            folder.mkdir(exist_ok=True)
            fsync_dir(self.inbox)
        tmp = folder / f".{target.name}.{threading.get_ident():x}{TEMP_SUFFIX}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.mode)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            with self._rename_lock:
                if target.exists():
                    tmp.unlink()
                    return False
                os.rename(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(folder)
        return True
