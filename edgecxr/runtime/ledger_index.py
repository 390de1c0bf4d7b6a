"""`OUT/.results-index.npz`: the ledger's index saved beside results.jsonl, so a start after a year of
results reads the index and only the lines written after it, instead of parsing every line.

The file is a cache with one writer and one reader (this module) and never the truth: it records how
many bytes of results.jsonl it covers and the sha256 of those bytes. A start uses it only when the
ledger's first `covered` bytes still hash the same; anything else (a hand edit, a restored backup, a
damaged line set aside, a missing, torn or foreign file, another version) rebuilds the index from the
lines, as before. It holds numbers only: keyed hashes would add nothing, since results.jsonl beside it
holds the same identifiers in clear (treat both alike in backups and support bundles). Saving or
loading it never stops the watcher.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

INDEX = ".results-index.npz"
VERSION = 2
SHA_BYTES = 32
# Python's hash of an int tuple (the file identity in `stats`) is unsalted but implementation-defined
HASH_ID = [sys.hash_info.algorithm, sys.hash_info.width]


def stable_key(text: str) -> int:
    """A 64-bit key that is the same in every process (Python's str hash is salted per process)."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


@dataclass
class Saved:
    """The ledger's index for the first `covered` bytes (`lines` lines) of results.jsonl."""

    covered: int
    lines: int
    sha256: str
    versions: set[int]
    stats: dict[int, tuple[int, bytes, str]]  # path key -> (identity hash, sha256 bytes (32 or 0), status)
    judged: dict[int, int]  # sha256/UID key -> byte offset of the line that judged it
    counts: dict[str, int]
    # (day since 1970, byte offset): on that day the file ended there, so every line before the offset
    # was written that day or earlier; what lets a start drop judged keys older than the duplicate window
    marks: list[tuple[int, int]] = field(default_factory=list)


def save(folder: Path, index: Saved) -> bool:
    """Write the index atomically (fsynced, mode 0600); False when it cannot be saved, for any reason:
    the next start then parses the lines after the last index that was saved."""
    temporary = folder / f"{INDEX}.tmp"  # one writer (the ResultsLock): a fixed name, so a SIGKILL leaves one
    try:
        arrays = _arrays(index)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]  # numpy's stub reads **kwds as allow_pickle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, folder / INDEX)
    except Exception:  # a cache: a full disk or an odd line costs a slower start, nothing more
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        return False
    return True


def _arrays(index: Saved) -> dict[str, np.ndarray]:
    stats = index.stats.values()
    if any(len(sha) not in (0, SHA_BYTES) for _, sha, _ in stats):
        raise ValueError("a hand-edited sha256 that is not 64 hex digits")
    statuses = sorted({status for _, _, status in stats})
    code = {status: i for i, status in enumerate(statuses)}
    meta = {"version": VERSION, "hash": HASH_ID, "covered": index.covered, "lines": index.lines,
            "sha256": index.sha256, "statuses": statuses, "counts": index.counts, "marks": index.marks}
    n = len(index.stats)
    return {
        "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8),
        "versions": np.fromiter(index.versions, np.int64, len(index.versions)),
        "stat_keys": np.fromiter(index.stats.keys(), np.int64, n),
        "stat_identity": np.fromiter((v[0] for v in stats), np.int64, n),
        "stat_sha": np.frombuffer(b"".join(v[1] or bytes(SHA_BYTES) for v in stats), np.uint8),
        "stat_sha_len": np.fromiter((len(v[1]) for v in stats), np.uint8, n),
        "stat_status": np.fromiter((code[v[2]] for v in stats), np.uint32, n),
        "judged_keys": np.fromiter(index.judged.keys(), np.int64, len(index.judged)),
        "judged_offsets": np.fromiter(index.judged.values(), np.int64, len(index.judged)),
    }


def load(folder: Path, results: Path):
    """(Saved, running sha256 of the covered bytes) when the saved index still matches results.jsonl's
    first bytes; None otherwise (the caller parses every line)."""
    try:
        with np.load(folder / INDEX, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        meta = json.loads(arrays["meta"].tobytes())
        n = len(arrays["stat_keys"])
        consistent = (len(arrays["stat_identity"]) == len(arrays["stat_sha_len"]) == len(arrays["stat_status"]) == n
                      and len(arrays["stat_sha"]) == SHA_BYTES * n
                      and len(arrays["judged_keys"]) == len(arrays["judged_offsets"]))
        if (not consistent or meta["version"] != VERSION or meta["hash"] != HASH_ID
                or results.stat().st_size < meta["covered"]):
            return None
        running = _hash_prefix(results, meta["covered"])
        if running.hexdigest() != meta["sha256"]:
            return None
        statuses, shas = meta["statuses"], arrays["stat_sha"].tobytes()
        stats = {key: (identity, shas[i * SHA_BYTES:i * SHA_BYTES + length], statuses[status])
                 for i, (key, identity, length, status) in enumerate(zip(
                     arrays["stat_keys"].tolist(), arrays["stat_identity"].tolist(),
                     arrays["stat_sha_len"].tolist(), arrays["stat_status"].tolist()))}
        saved = Saved(meta["covered"], meta["lines"], meta["sha256"], set(arrays["versions"].tolist()), stats,
                      dict(zip(arrays["judged_keys"].tolist(), arrays["judged_offsets"].tolist())),
                      {str(k): int(v) for k, v in meta["counts"].items()},
                      [(int(day), int(offset)) for day, offset in meta["marks"]])
    except Exception:  # missing, torn, foreign or crafted: rebuilt from the lines
        return None
    return saved, running


def _hash_prefix(path: Path, length: int, block: int = 1 << 20):
    """sha256 of the first `length` bytes: about 2 s per GB here, against some 17 s to parse them."""
    running = hashlib.sha256()
    with open(path, "rb") as handle:
        left = length
        while left > 0:
            chunk = handle.read(min(block, left))
            if not chunk:
                raise ValueError("results.jsonl is shorter than its index says")
            running.update(chunk)
            left -= len(chunk)
    return running
