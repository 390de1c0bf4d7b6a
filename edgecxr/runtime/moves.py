"""Moving processed inputs out of the inbox (`--archive`, `--quarantine`) without losing one.

Same file system: an atomic rename, then both folders are fsynced so the new name survives a
power cut. Across file systems: copy to a temporary name in the destination, fsync it, verify
its sha256, rename it into place and fsync the destination folder; only then is the source
unlinked (and its folder fsynced). At every instant at least one complete, durable copy exists.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from edgecxr.data.fingerprint import sha256_file
from edgecxr.fsutil import fsync_dir


def destination(root: Path, rel: str, sha256: str) -> Path:
    target = root / rel
    if target.exists():  # an earlier version under the same name: keep both
        target = target.with_name(f"{target.stem}.{sha256[:12]}{target.suffix}")
    return target


def move(src: Path, root: Path, rel: str, sha256: str) -> Path:
    target = destination(root, rel, sha256)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(src, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    else:
        fsync_dir(target.parent)
        fsync_dir(src.parent)
        return target
    tmp = target.with_name(f".{target.name}.copying")
    try:
        shutil.copy2(src, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        if sha256 and sha256_file(tmp) != sha256:
            raise OSError(f"copy of {src} to {target} does not match its sha256; source kept")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)  # the copy's name is durable before the original goes
    os.unlink(src)
    fsync_dir(src.parent)
    return target



class Mover:
    """Archive or quarantine an input after its line is durable; a failure is said once and retried.

    A failed move (a folder turned read-only, a full disk) leaves the input in the inbox, already
    recorded: it is retried on every rescan, and logged only the first time and on success.
    """

    def __init__(self, archive: Path | None, quarantine: Path | None, counters, log: Callable[[str], None]):
        self.archive, self.quarantine = archive, quarantine
        self.counters, self.log = counters, log
        self.failed: set[str] = set()

    def move(self, src: Path, rel: str, status: str, sha256: str) -> None:
        root = self.archive if status == "ok" else self.quarantine
        if root is None:
            return
        try:
            move(src, root, rel, sha256)
        except OSError as exc:
            self.counters.last_error = f"{rel}: move failed: {exc}"
            if rel not in self.failed:
                self.failed.add(rel)
                self.log(f"could not move {rel} to {root}: {exc} (it stays in the inbox, already recorded; "
                         "retried on each rescan)")
            return
        self.counters.moved += 1
        if rel in self.failed:
            self.failed.discard(rel)
            self.log(f"moved {rel} to {root} after an earlier failure")
