"""Finding complete files in the inbox.

A file is complete when its size and mtime have not changed for the settle time and its
name is not one that scanners and copy tools use while writing (`.*`, `~*`, `*.tmp`,
`*.part`, `*.partial`): those are waited on until renamed. Subfolders are read by default:
export nodes write `study/series/IMG0001`; edgecxr's own output folders inside the inbox are
skipped.

Every real file is read once, however many links lead to it. A symbolic link is never read
itself: one leading outside the inbox is reported and not followed, and one leading inside it
(a file, or a folder such as `a/loop -> ..`) is resolved to what the walk reads anyway under its
own name. Folders are walked once each by (device, inode), so no link or bind mount can make a
scan loop, and hard links to one file give one entry. The scan stops at once when asked to stop.
A name that is not valid UTF-8 (an SMB share written by an old system) is kept for reading
but recorded with its odd bytes escaped (`\\xe9`), so the results file stays valid JSON.
"""

from __future__ import annotations

import os
import stat
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".filepart")


def is_temporary_name(name: str) -> bool:
    lower = name.lower()
    return name.startswith((".", "~")) or lower.endswith(TEMP_SUFFIXES)


@dataclass
class Entry:
    rel: str
    path: Path
    size: int
    mtime_ns: int
    inode: int = -1
    ctime_ns: int = -1

    @property
    def identity(self) -> tuple[int, int, int, int]:
        """Matches `ledger.identity_of`: a replaced file differs at least in inode or ctime."""
        return (self.size, self.mtime_ns, self.inode, self.ctime_ns)


@dataclass
class ScanResult:
    files: dict[str, Entry]
    temporary: int  # names waited on until renamed
    outside_links: list[str]  # links leading outside the inbox, never followed
    inside_links: int = 0  # links inside the inbox: what they lead to is read under its own name
    stopped: bool = False  # cut short by the stop event: the caller is stopping
    seen: set[tuple[int, int]] = field(default_factory=set)  # (st_dev, st_ino) of folders and files visited


def scan(inbox: Path, *, recursive: bool, exclude: list[Path], stop: threading.Event | None = None) -> ScanResult:
    """Bounded: each folder is listed at most once per scan, and `stop` is checked before each one."""
    root = inbox.resolve()
    result = ScanResult({}, 0, [])
    excluded = {p.resolve() for p in exclude}
    stack = deque([root])  # breadth first, names sorted: the same name wins on every scan
    while stack:
        if stop is not None and stop.is_set():
            result.stopped = True
            break
        folder = stack.popleft()
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in result.seen:
                continue
            result.seen.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)  # the same name wins each time
        except OSError:
            continue
        for number, entry in enumerate(entries, 1):
            if number % 1000 == 0 and stop is not None and stop.is_set():  # one folder may hold a year of files
                result.stopped = True
                return result
            try:
                _visit(entry, root, recursive, excluded, stack, result)
            except (OSError, RuntimeError, ValueError):  # vanished, a link loop: never stops a scan
                continue
    return result


def _visit(entry: os.DirEntry, root: Path, recursive: bool, excluded: set[Path], stack: deque[Path],
           result: ScanResult) -> None:
    path = Path(entry.path)
    rel = recorded_name(path.relative_to(root).as_posix())
    if entry.is_symlink():
        if path.resolve().is_relative_to(root):
            result.inside_links += 1
        else:
            result.outside_links.append(rel)
        return
    st = entry.stat(follow_symlinks=False)
    if stat.S_ISDIR(st.st_mode):
        if recursive and path not in excluded and not entry.name.startswith("."):
            stack.append(path)
        return
    if is_temporary_name(entry.name):
        result.temporary += 1
        return
    if (st.st_dev, st.st_ino) in result.seen:  # a hard link to a file already listed
        return
    result.seen.add((st.st_dev, st.st_ino))
    result.files[rel] = Entry(rel, path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def recorded_name(rel: str) -> str:
    """The name as written to results.jsonl: bytes that are not UTF-8 escaped, never a JSON error."""
    try:
        rel.encode("utf-8")
        return rel
    except UnicodeEncodeError:
        return rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class Settler:
    """Remembers when each file's (size, mtime) last changed; a file settles after `seconds`."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._since: dict[str, tuple[int, int, float]] = {}

    def ready(self, entry: Entry, now: float, wall_now: float) -> bool:
        key = (entry.size, entry.mtime_ns)
        known = self._since.get(entry.rel)
        if known is None or known[:2] != key:
            # a file already old when first seen (backlog) counts as settled since its mtime
            age = wall_now - entry.mtime_ns / 1e9
            start = now - max(0.0, age) if known is None else now
            self._since[entry.rel] = (*key, start)
            known = self._since[entry.rel]
        # an empty file is often one whose writer has not started: give it ten settle times
        wait = self.seconds if entry.size > 0 else 10 * self.seconds
        return now - known[2] >= wait

    def forget_missing(self, present: set[str]) -> None:
        for rel in list(self._since):
            if rel not in present:
                del self._since[rel]
