"""Finding complete files in the inbox.

A file is complete when its size and mtime have not changed for the settle time and its
name is not one that scanners and copy tools use while writing (`.*`, `~*`, `*.tmp`,
`*.part`, `*.partial`): those are waited on until renamed. Symbolic links that lead
outside the inbox are never followed; edgecxr's own output folders inside the inbox are
skipped. Subfolders are read by default: export nodes write `study/series/IMG0001`.
A name that is not valid UTF-8 (an SMB share written by an old system) is kept for reading
but recorded with its odd bytes escaped (`\\xe9`), so the results file stays valid JSON.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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


def scan(inbox: Path, *, recursive: bool, exclude: list[Path]) -> ScanResult:
    root = inbox.resolve()
    result = ScanResult({}, 0, [])
    excluded = {p.resolve() for p in exclude}
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                _visit(entry, root, recursive, excluded, stack, result)
            except (OSError, RuntimeError, ValueError):  # vanished, a link loop: never stops a scan
                continue
    return result


def _visit(entry: os.DirEntry, root: Path, recursive: bool, excluded: set[Path], stack: list[Path],
           result: ScanResult) -> None:
    path = Path(entry.path)
    rel = recorded_name(path.relative_to(root).as_posix())
    if entry.is_symlink() and not path.resolve().is_relative_to(root):
        result.outside_links.append(rel)
        return
    if entry.is_dir():
        if recursive and path.resolve() not in excluded and not entry.name.startswith("."):
            stack.append(path)
        return
    if is_temporary_name(entry.name):
        result.temporary += 1
        return
    st = entry.stat()
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
