"""Append-only JSON-lines files that survive a crash: results.jsonl (the ledger) and each PACS's sent.jsonl.

One line is one record, written by a single O_APPEND write and fsynced before the caller counts it
done. A crash can then only leave a torn last line, never a missing middle one: `cut_torn_tail`
removes it on start, and readers skip it meanwhile. Torch-free and loop-free: core sits below
every writer and reader of these files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path


def write_all(fd: int, data: bytes) -> None:
    """Write every byte and fsync: os.write may write less than asked (a signal, a nearly full disk),
    and a line cut short by that would look like a crash's torn tail to the next start."""
    written = 0
    while written < len(data):
        written += os.write(fd, data[written:])
    os.fsync(fd)


def append_durably(path: Path, data: bytes) -> None:
    """Append `data` (whole lines) to `path`, creating it, and make it durable before returning."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)


def cut_torn_tail(path: Path) -> int:
    """Cut what a crash mid-append leaves: an unterminated last line, or a last line that is not JSON
    (zeros a file system left after a power cut), so the next line starts clean. Bytes cut. Reads the
    tail only: a year of lines is never read for it."""
    if not path.exists():
        return 0
    with open(path, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        base, data = _last_line(handle, size)
        keep = size
        if data and not data.endswith(b"\n"):
            keep = base + data.rfind(b"\n") + 1
        else:
            last_start = data.rfind(b"\n", 0, max(len(data) - 1, 0)) + 1
            last = data[last_start:].strip()
            if last:
                try:
                    json.loads(last)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    keep = base + last_start
        if keep != size:
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
        return size - keep


def _last_line(handle, size: int, block: int = 1 << 16) -> tuple[int, bytes]:
    """(offset, bytes) of a tail of the file that holds its whole last line (and the newline before it)."""
    start = size
    while True:
        start = max(0, start - block)
        handle.seek(start)
        data = handle.read(size - start)
        if start == 0 or data.rfind(b"\n", 0, max(len(data) - 1, 0)) >= 0:
            return start, data
        block *= 2


def parse_line(raw: bytes) -> dict | None:
    """One line as a dict; None for a torn, damaged or non-object line (readers skip it)."""
    try:
        record = json.loads(raw.decode("utf-8"))  # decoded first: json's own encoding sniffing is slower
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def iter_lines(path: Path) -> Iterator[dict]:
    """Every complete, parsable line of `path`, streamed (nothing when the file is missing)."""
    if not path.exists():
        return
    with open(path, "rb") as handle:
        for raw in handle:
            record = parse_line(raw) if raw.strip() else None
            if record is not None:
                yield record
