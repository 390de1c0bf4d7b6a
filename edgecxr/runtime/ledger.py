"""`OUT/results.jsonl`: one durable line per input file version, exactly once across crashes.

A line is appended, flushed and fsynced before its input counts as done. A crash can
only leave a torn last line (never a missing middle one); on start the torn tail is cut
off, and its input, having no complete line, is simply processed again. A version is
(relative path, sha256): a file that changes after its line was written is a new version
and gets a new line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from edgecxr.fsutil import fsync_dir

RESULTS = "results.jsonl"
RESULT_SCHEMA = "edgecxr.result/1"


class Ledger:
    def __init__(self, out_dir: str | Path):
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.path = self.out / RESULTS
        self.repaired_bytes = self._repair()
        self.versions: set[tuple[str, str]] = set()
        self.stats: dict[str, tuple[int, int, str, str]] = {}  # rel -> (size, mtime_ns, sha256, status), last line
        self.counts = {"ok": 0, "error": 0}
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
        with open(self.path, "rb") as handle:
            for raw in handle:
                raw = raw.strip()
                if not raw:
                    continue
                record = json.loads(raw)
                self._index(record)

    def _index(self, record: dict) -> None:
        rel, sha = record["path"], record.get("sha256", "")
        self.versions.add((rel, sha))
        self.stats[rel] = (record.get("size", -1), record.get("mtime_ns", -1), sha, record.get("status", "error"))
        self.counts[record.get("status", "error")] = self.counts.get(record.get("status", "error"), 0) + 1

    def seen_unchanged(self, rel: str, size: int, mtime_ns: int) -> bool:
        """True when the last line for `rel` was written for a file of this size and mtime."""
        known = self.stats.get(rel)
        return known is not None and known[0] == size and known[1] == mtime_ns

    def has_version(self, rel: str, sha256: str) -> bool:
        return (rel, sha256) in self.versions

    def remember_stat(self, rel: str, size: int, mtime_ns: int, sha256: str) -> None:
        """Same content under a new mtime (touched, copied again): no new line, but no rehash next time."""
        self.stats[rel] = (size, mtime_ns, sha256, self.stats.get(rel, (0, 0, "", "ok"))[3])

    def append(self, records: list[dict]) -> None:
        """Write the lines and make them durable; only then are their inputs done."""
        if not records:
            return
        payload = "".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False) + "\n" for r in records)
        data = payload.encode()
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


def read_results(out_dir: str | Path) -> list[dict]:
    """Every complete line (a torn last line, left by a crash, is not a result)."""
    path = Path(out_dir) / RESULTS
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records

