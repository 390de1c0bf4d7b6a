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

Exactly once across archive and resend: an image judged before (status "ok" or "out_of_scope")
that arrives again under another name, a DICOM instance by its SOP Instance UID and any other
file by its sha256, gets one line with status "duplicate" naming the earlier line, and nothing
else (no second SR: sinks send "ok" lines only). This holds for lines written in the last
DUPLICATE_DAYS days. The ledger never holds the lines themselves: per judged image it keeps a
16-byte key and the byte offset of its line, and reads that one line back on a match.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from edgecxr.core.fsutil import fsync_dir
from edgecxr.core.jsonl import cut_torn_tail, write_all
from edgecxr.core.provenance import utc_now
from edgecxr.core.results import JUDGED, RESULTS
from edgecxr.core.results import parse_result as _parse
from edgecxr.runtime import ledger_index
from edgecxr.runtime.ledger_index import stable_key

DUPLICATE_DAYS = 365  # an image judged within this many days is a duplicate when it comes again
# the saved index is refreshed after this many new lines, or 5 % of the ledger when that is more (a save
# rewrites the whole index: 0.1 s at 100,000 lines), so a SIGKILL leaves little to parse at the next start
SAVE_INDEX_EVERY = 5000


class Ledger:
    def __init__(self, out_dir: str | Path):
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.path = self.out / RESULTS
        self.repaired_bytes = self._repair()
        # Compact on purpose (a year of lines): keys are Python hashes of the path or content, never the lines.
        self.versions: set[int] = set()  # hash((path, sha256)) of every line
        # hash(path) -> (hash(identity), sha256 as bytes, status) of its last line; identity = (size, mtime_ns,
        # inode, ctime_ns): a file whose identity hash matches was recorded as it is and is not read again
        self.stats: dict[int, tuple[int, bytes, str]] = {}
        self.counts = {"ok": 0, "error": 0}
        self.damaged_lines: list[int] = []  # 1-based line numbers dropped from the live ledger
        self.damaged_copy: Path | None = None
        # hash of a sha256 or SOP Instance UID -> byte offset of the line that judged it (checked on reading
        # it back, so a hash collision is never a false duplicate); pending: this burst's, not yet written
        self.judged: dict[int, int] = {}
        self.pending: dict[int, str] = {}
        self._end = 0  # the byte offset the next line is written at
        self._lines = 0  # lines in the file; with _sha (sha256 of its bytes so far), what a saved index records
        self._sha = hashlib.sha256()
        self._unsaved = 0  # lines (and remembered identities) not yet in the saved index
        self.index_saved: bool | None = None  # the last save's outcome (None: none tried yet)
        self._marks: list[tuple[int, int]] = []  # (day, end offset) at each day's first save: see ledger_index.Saved
        self._load()
        if self._unsaved >= SAVE_INDEX_EVERY // 5:
            self._save_index()
        new = not self.path.exists()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if new:
            fsync_dir(self.out)

    def _repair(self) -> int:
        """Cut a torn (unterminated or unparsable) last line left by a crash."""
        return cut_torn_tail(self.path)

    def _load(self, saved_index: bool = True) -> None:
        """Index every line in one streaming pass, starting after the saved index when it still matches the
        file; damaged lines are set aside, then the clean file indexed."""
        if not self.path.exists():
            return
        offset = self._lines = 0
        self._sha = hashlib.sha256()
        loaded = ledger_index.load(self.out, self.path) if saved_index else None
        if loaded is not None:
            saved, self._sha = loaded
            self.versions, self.stats, self.counts, self._marks = saved.versions, saved.stats, saved.counts, saved.marks
            offset, self._lines = saved.covered, saved.lines
            # judged keys of lines older than the duplicate window are dropped, as a full parse drops them
            old = max((end for day, end in self._marks if day < _today() - DUPLICATE_DAYS), default=0)
            self.judged = {key: at for key, at in saved.judged.items() if at >= old} if old else saved.judged
        cutoff = _iso_days_ago(DUPLICATE_DAYS)
        with open(self.path, "rb") as handle:
            handle.seek(offset)
            for raw in handle:
                self._lines += 1
                self._unsaved += 1
                self._sha.update(raw)
                record = _parse(raw) if raw.strip() else {}
                if record is None:
                    self.damaged_lines.append(self._lines)
                elif record:
                    self._index(record, offset, cutoff)
                offset += len(raw)
            self._end = offset
        if self.damaged_lines:
            self._set_aside()
            self.versions, self.stats, self.judged = set(), {}, {}
            self.counts = {"ok": 0, "error": 0}
            damaged, self.damaged_lines = self.damaged_lines, []
            self._load(saved_index=False)  # the offsets of the clean file
            self.damaged_lines = damaged

    def _save_index(self) -> None:
        """Save the index for the lines written so far (a cache: a start checks it against the file). A failed
        save (a full disk) is tried again only after as many new lines, never at every append."""
        today = _today()
        if not self._marks or self._marks[-1][0] != today:
            self._marks.append((today, self._end))
        expired = [i for i, (day, _) in enumerate(self._marks) if day < today - DUPLICATE_DAYS]
        if expired:  # the newest expired mark is the one a start needs; older ones say nothing more
            del self._marks[:expired[-1]]
        self.index_saved = ledger_index.save(self.out, ledger_index.Saved(
            self._end, self._lines, self._sha.hexdigest(), self.versions, self.stats, self.judged, self.counts,
            self._marks))
        self._unsaved = 0

    def _set_aside(self) -> None:
        """Keep the damaged ledger whole beside the live one, then drop its damaged lines once."""
        stamp = utc_now().replace(":", "").replace("+0000", "Z")
        self.damaged_copy = self.path.with_name(f"{RESULTS}.damaged-{stamp}")
        shutil.copy2(self.path, self.damaged_copy)
        with open(self.damaged_copy, "rb") as handle:
            os.fsync(handle.fileno())
        clean = self.path.with_name(f".{RESULTS}.clean")
        with open(self.damaged_copy, "rb") as source, open(clean, "wb") as target:
            for raw in source:  # streamed: a year of lines is never held at once
                if raw.strip() and _parse(raw) is not None:
                    target.write(raw if raw.endswith(b"\n") else raw + b"\n")
            target.flush()
            os.fsync(target.fileno())
        os.replace(clean, self.path)
        fsync_dir(self.out)

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

    def _index(self, record: dict, offset: int, cutoff: str = "") -> None:
        rel, sha = record["path"], str(record.get("sha256", ""))
        status = sys.intern(str(record.get("status", "error")))
        self.versions.add(_version_key(rel, sha))
        self.stats[stable_key(rel)] = (hash(identity_of(record)), _packed(sha), status)
        self.counts[status] = self.counts.get(status, 0) + 1
        if status in JUDGED and str(record.get("completed_at", "")) >= cutoff:
            for key in _keys(sha, _uid(record)):
                self.judged[key] = offset
                self.pending.pop(key, None)

    def earlier(self, sha256: str, uid: str | None) -> dict | None:
        """The line (path, completed_at) that already judged this DICOM instance or these bytes within
        DUPLICATE_DAYS, or one of this burst not yet written; None for an image seen for the first time."""
        for key in _keys(sha256, uid):
            if key in self.pending:
                return {"path": self.pending[key], "completed_at": None}
            offset = self.judged.get(key)
            record = self._line_at(offset) if offset is not None else None
            if (record is not None and str(record.get("completed_at", "")) >= _iso_days_ago(DUPLICATE_DAYS)
                    and (record.get("sha256") == sha256 or (uid and _uid(record) == uid))):
                return {"path": record["path"], "completed_at": record.get("completed_at")}
        return None

    def reserve(self, sha256: str, uid: str | None, rel: str) -> None:
        """An image on its way to a line: a copy of it later in the same burst is its duplicate."""
        for key in _keys(sha256, uid):
            self.pending.setdefault(key, rel)

    def _line_at(self, offset: int) -> dict | None:
        with open(self.path, "rb") as handle:
            handle.seek(offset)
            return _parse(handle.readline())

    def seen_unchanged(self, rel: str, identity: tuple) -> bool:
        """True when the last line for `rel` was written for this very file (size, mtime, inode, ctime)."""
        known = self.stats.get(stable_key(rel))
        return known is not None and known[0] == hash(identity)

    def recorded(self, rel: str) -> tuple[str, str]:
        """(sha256, status) of the last line for `rel`."""
        _, sha, status = self.stats[stable_key(rel)]
        return (sha.hex() if len(sha) == 32 else sha.decode("utf-8", "surrogateescape")), status

    def has_version(self, rel: str, sha256: str) -> bool:
        return _version_key(rel, sha256) in self.versions

    def remember_stat(self, rel: str, identity: tuple, sha256: str) -> None:
        """Same content under a new identity (touched, copied again): no new line, but no rehash next time."""
        key = stable_key(rel)
        status = self.stats.get(key, (0, b"", "ok"))[2]
        self.stats[key] = (hash(identity), _packed(sha256), status)
        self._unsaved += 1  # in no line: only the saved index keeps it across a restart

    def append(self, records: list[dict]) -> None:
        """Write the lines and make them durable; only then are their inputs done."""
        if not records:
            return
        lines = [(json.dumps(r, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace")
                 for r in records]
        write_all(self._fd, b"".join(lines))
        for record, line in zip(records, lines):
            self._index(record, self._end)
            self._end += len(line)
            self._sha.update(line)
        self._lines += len(lines)
        self._unsaved += len(lines)
        if self._unsaved >= max(SAVE_INDEX_EVERY, self._lines // 20):
            self._save_index()

    def close(self) -> None:
        if self._fd >= 0:
            if self._unsaved:
                self._save_index()
            os.close(self._fd)
            self._fd = -1


def identity_of(record: dict) -> tuple:
    """What a line says about the file it was written for; matches `scanner.Entry.identity`."""
    return (record.get("size", -1), record.get("mtime_ns", -1), record.get("inode", -1), record.get("ctime_ns", -1))


def _uid(record: dict) -> str | None:
    dicom = record.get("dicom")
    return dicom.get("SOPInstanceUID") if isinstance(dicom, dict) else None


def _version_key(rel: str, sha256: str) -> int:
    """One file version: its path and its bytes' sha256 (what `versions` holds and is asked about)."""
    return stable_key(f"{rel}\0{sha256}")


def _keys(sha256: str, uid: str | None) -> list[int]:
    """A DICOM instance by its SOP Instance UID, any file by its bytes' sha256."""
    return ([stable_key(f"uid\0{uid}")] if uid else []) + ([stable_key(f"sha\0{sha256}")] if sha256 else [])


def _packed(sha256: str) -> bytes:
    """A sha256 in 32 bytes rather than 64 characters (a hand-edited odd value is kept as it is)."""
    try:
        return bytes.fromhex(sha256) if len(sha256) == 64 else sha256.encode("utf-8", "surrogateescape")
    except ValueError:
        return sha256.encode("utf-8", "surrogateescape")


def _today() -> int:
    return int(time.time() // 86400)


def _iso_days_ago(days: float) -> str:
    """`completed_at` of a line written `days` ago (utc_now's format compares as text)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - days * 86400))
