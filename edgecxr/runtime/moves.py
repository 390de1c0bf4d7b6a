"""Moving processed inputs out of the inbox (`--archive`, `--quarantine`) without losing one.

Same file system: an atomic rename, then both folders are fsynced so the new name survives a
power cut. Across file systems: copy to a temporary name in the destination, fsync it, verify
its sha256, rename it into place and fsync the destination folder; only then is the source
unlinked (and its folder fsynced). At every instant at least one complete, durable copy exists.
A file whose very bytes are already kept under its name (sent again after archiving) is unlinked
instead of kept twice, once both copies have been hashed.

The study and series folders a move leaves empty are removed, but only once they have been
empty and unchanged for a quiet time (a scanner pausing between two images of a series must
not find its folder gone), only with rmdir (which refuses a folder that holds anything), never
the inbox itself and never a folder the watcher did not empty.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path

from edgecxr.core.data.fingerprint import sha256_file
from edgecxr.core.fsutil import fsync_dir


def destination(root: Path, rel: str, sha256: str) -> Path:
    target = root / rel
    if target.exists():  # an earlier version under the same name: keep both
        target = target.with_name(f"{target.stem}.{sha256[:12]}{target.suffix}")
    return target


def _kept_already(src: Path, root: Path, rel: str, sha256: str) -> bool:
    """True when `root` holds this very content under this name (the same file sent again)."""
    plain = root / rel
    for kept in (plain, plain.with_name(f"{plain.stem}.{sha256[:12]}{plain.suffix}")):
        try:
            if kept.is_file() and kept.stat().st_size == src.stat().st_size and sha256_file(kept) == sha256:
                return sha256_file(src) == sha256  # both read now: nothing is unlinked on a recorded hash alone
        except OSError:
            continue
    return False


def move(src: Path, root: Path, rel: str, sha256: str) -> Path:
    if sha256 and _kept_already(src, root, rel, sha256):  # one copy is kept, not two
        os.unlink(src)
        fsync_dir(src.parent)
        return root / rel
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

    def __init__(self, archive: Path | None, quarantine: Path | None, counters, log: Callable[[str], None],
                 inbox: Path | None = None, quiet_seconds: float = 60.0):
        self.archive, self.quarantine = archive, quarantine
        self.counters, self.log = counters, log
        self.failed: set[str] = set()
        self.inbox = inbox.resolve() if inbox is not None else None
        self.quiet_seconds = quiet_seconds
        self.emptied: set[Path] = set()  # folders a move took a file out of: removed by sweep() once empty

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
        if self.inbox is not None and src.parent != self.inbox and src.parent.is_relative_to(self.inbox):
            self.emptied.add(src.parent)
        if rel in self.failed:
            self.failed.discard(rel)
            self.log(f"moved {rel} to {root} after an earlier failure")

    def sweep(self, now: float | None = None) -> int:
        """Remove the folders moves have emptied, and their emptied parents, once quiet; the number removed."""
        if self.inbox is None:
            return 0
        now = time.time() if now is None else now
        removed = 0
        for folder in sorted(self.emptied, reverse=True):  # deepest first
            chain = [folder, *(p for p in folder.parents if p.is_relative_to(self.inbox) and p != self.inbox)]
            try:  # every age before any rmdir: removing a child changes its parent's mtime
                ages = [_quiet_for(f, now) for f in chain]
            except OSError:  # gone already
                self.emptied.discard(folder)
                continue
            if ages[0] < self.quiet_seconds:
                continue  # changed lately (a file arrived, or the move was just now): look again later
            self.emptied.discard(folder)
            for f, age in zip(chain, ages):
                if age < self.quiet_seconds:
                    self.emptied.add(f)  # a parent changed lately: look again later
                    break
                try:
                    os.rmdir(f)  # refuses a folder that is not empty: a file written meanwhile stays
                except OSError:
                    break
                removed += 1
        return removed


def _quiet_for(folder: Path, now: float) -> float:
    """Seconds since the folder last changed; -1 for what is not a real folder (a link is never removed)."""
    st = os.lstat(folder)
    return now - st.st_mtime if stat.S_ISDIR(st.st_mode) else -1.0
