"""`OUT/results.jsonl`: one durable line per input file version, exactly once across crashes.

A line is appended, flushed and fsynced before its input counts as done. A crash can
only leave a torn last line (never a missing middle one); on start the torn tail is cut
off, and its input, having no complete line, is simply processed again. A version is
(relative path, sha256): a file that changes after its line was written is a new version
and gets a new line. A file whose name, size, mtime, inode and ctime all match its last line
is not read again; any other file is hashed, so a different image under an old name, size
and mtime is still classified.

A damaged line in the middle (a disk error, a hand edit) must not crash-loop a service: the
whole ledger is copied aside as `results.jsonl.damaged-<time>`, the damaged lines are
counted and dropped from the live ledger, and the watcher goes on.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from edgecxr.fsutil import atomic_write_text, fsync_dir
from edgecxr.provenance import utc_now

RESULTS = "results.jsonl"
RESULT_SCHEMA = "edgecxr.result/1"


class Ledger:
    def __init__(self, out_dir: str | Path):
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.path = self.out / RESULTS
        self.repaired_bytes = self._repair()
        self.versions: set[tuple[str, str]] = set()
        # rel -> (identity, sha256, status) of its last line; identity = (size, mtime_ns, inode, ctime_ns)
        self.stats: dict[str, tuple[tuple, str, str]] = {}
        self.counts = {"ok": 0, "error": 0}
        self.damaged_lines: list[int] = []  # 1-based line numbers dropped from the live ledger
        self.damaged_copy: Path | None = None
        self._load()
        new = not self.path.exists()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if new:
            fsync_dir(self.out)

    def _repair(self) -> int:
        """Cut a torn (unterminated or unparsable) last line left by a crash."""
        if not self.path.exists():
            return 0
        with open(self.path, "rb+") as handle:
            data = handle.read()
            keep = len(data)
            if data and not data.endswith(b"\n"):
                keep = data.rfind(b"\n") + 1
            else:
                last_start = data.rfind(b"\n", 0, max(len(data) - 1, 0)) + 1
                last = data[last_start:].strip()
                if last:
                    try:
                        json.loads(last)
                    except json.JSONDecodeError:
                        keep = last_start
            if keep != len(data):
                handle.truncate(keep)
                handle.flush()
                os.fsync(handle.fileno())
            return len(data) - keep

    def _load(self) -> None:
        if not self.path.exists():
            return
        good: list[bytes] = []
        with open(self.path, "rb") as handle:
            for number, raw in enumerate(handle, 1):
                if not raw.strip():
                    continue
                record = _parse(raw)
                if record is None:
                    self.damaged_lines.append(number)
                    continue
                good.append(raw if raw.endswith(b"\n") else raw + b"\n")
                self._index(record)
        if self.damaged_lines:
            self._set_aside(good)

    def _set_aside(self, good: list[bytes]) -> None:
        """Keep the damaged ledger whole beside the live one, then drop its damaged lines once."""
        stamp = utc_now().replace(":", "").replace("+0000", "Z")
        self.damaged_copy = self.path.with_name(f"{RESULTS}.damaged-{stamp}")
        shutil.copy2(self.path, self.damaged_copy)
        with open(self.damaged_copy, "rb") as handle:
            os.fsync(handle.fileno())
        atomic_write_text(self.path, b"".join(good).decode("utf-8", "surrogateescape"))

    def start_notes(self) -> list[str]:
        """What the start repaired, for the log: said once, when it happened."""
        notes = []
        if self.repaired_bytes:
            notes.append(f"repaired results.jsonl: cut a torn last line of {self.repaired_bytes} bytes "
                         "(its input will be processed again)")
        if self.damaged_lines:
            lines = self.damaged_lines
            shown = ", ".join(map(str, lines[:10])) + (", ..." if len(lines) > 10 else "")
            notes.append(f"results.jsonl had {len(lines)} damaged line(s) (line {shown}): the whole file is kept "
                         f"as {self.damaged_copy}, the damaged lines are dropped from results.jsonl, and their "
                         "inputs, if still in the inbox, are classified again")
        return notes

    def _index(self, record: dict) -> None:
        rel, sha = record["path"], record.get("sha256", "")
        status = record.get("status", "error")
        self.versions.add((rel, sha))
        self.stats[rel] = (identity_of(record), sha, status)
        self.counts[status] = self.counts.get(status, 0) + 1

    def seen_unchanged(self, rel: str, identity: tuple) -> bool:
        """True when the last line for `rel` was written for this very file (size, mtime, inode, ctime)."""
        known = self.stats.get(rel)
        return known is not None and known[0] == identity

    def has_version(self, rel: str, sha256: str) -> bool:
        return (rel, sha256) in self.versions

    def remember_stat(self, rel: str, identity: tuple, sha256: str) -> None:
        """Same content under a new identity (touched, copied again): no new line, but no rehash next time."""
        self.stats[rel] = (identity, sha256, self.stats.get(rel, ((), "", "ok"))[2])

    def append(self, records: list[dict]) -> None:
        """Write the lines and make them durable; only then are their inputs done."""
        if not records:
            return
        payload = "".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False) + "\n" for r in records)
        data = payload.encode("utf-8", "backslashreplace")
        written = 0
        while written < len(data):
            written += os.write(self._fd, data[written:])
        os.fsync(self._fd)
        for record in records:
            self._index(record)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def identity_of(record: dict) -> tuple:
    """What a line says about the file it was written for; matches `scanner.Entry.identity`."""
    return (record.get("size", -1), record.get("mtime_ns", -1), record.get("inode", -1), record.get("ctime_ns", -1))


def _parse(raw: bytes) -> dict | None:
    try:
        record = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("path"), str):
        return None
    return record


def read_results(out_dir: str | Path) -> list[dict]:
    """Every complete line (a torn last line, left by a crash, is not a result)."""
    path = Path(out_dir) / RESULTS
    if not path.exists():
        return []
    records = []
    for line in path.read_bytes().splitlines():
        record = _parse(line)
        if record is not None:
            records.append(record)
    return records

