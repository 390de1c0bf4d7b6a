"""`OUT/.results-index.npz`: the ledger's index saved beside results.jsonl, so a start after a year of
results reads the index and only the lines written after it, instead of parsing every line.

The file is a cache with one writer and one reader (this module) and never the truth: it records how
many bytes of results.jsonl it covers and the sha256 of those bytes. A start uses it only when the
ledger's first `covered` bytes still hash the same; anything else (a hand edit, a restored backup, a
damaged line set aside, a missing or unreadable file, another version) rebuilds the index from the
lines, as before. It holds numbers only (keys are stable 64-bit hashes; numpy loads it without pickle),
never a path, a UID or any other text from the lines.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

INDEX = ".results-index.npz"
VERSION = 1
SHA_BYTES = 32


def stable_key(text: str) -> int:
    """A 64-bit key that is the same in every process (Python's str hash is salted per process)."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def save(folder: Path, covered: int, lines: int, prefix_sha256: str, versions: set[int],
         stats: dict[int, tuple[int, bytes, str]], judged: dict[int, int], counts: dict[str, int]) -> bool:
    """Write the index for the first `covered` bytes (`lines` lines), atomically; False when it cannot be saved
    (a hand-edited sha256 that is not 64 hex digits) or the folder refuses it: the next start parses."""
    if any(len(sha) != SHA_BYTES for _, sha, _ in stats.values()):
        return False
    statuses = sorted({status for _, _, status in stats.values()})
    code = {status: i for i, status in enumerate(statuses)}
    meta = {"version": VERSION, "covered": covered, "lines": lines, "sha256": prefix_sha256, "statuses": statuses,
            "counts": counts}
    arrays: dict[str, np.ndarray] = {
        "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8),
        "versions": np.fromiter(versions, np.int64, len(versions)),
        "stat_keys": np.fromiter(stats.keys(), np.int64, len(stats)),
        "stat_identity": np.fromiter((v[0] for v in stats.values()), np.int64, len(stats)),
        "stat_sha": np.frombuffer(b"".join(v[1] for v in stats.values()), np.uint8),
        "stat_status": np.fromiter((code[v[2]] for v in stats.values()), np.uint8, len(stats)),
        "judged_keys": np.fromiter(judged.keys(), np.int64, len(judged)),
        "judged_offsets": np.fromiter(judged.values(), np.int64, len(judged)),
    }
    target = folder / INDEX
    temporary = folder / f"{INDEX}.tmp-{os.getpid()}"
    try:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]  # numpy's stub reads **kwds as allow_pickle
        os.replace(temporary, target)
    except OSError:
        temporary.unlink(missing_ok=True)
        return False
    return True


def load(folder: Path, results: Path) -> tuple[dict, hashlib._Hash] | None:
    """(index, running sha256 of the covered bytes) when the saved index still matches results.jsonl's
    first bytes; None otherwise (the caller parses every line)."""
    try:
        with np.load(folder / INDEX, allow_pickle=False) as saved:
            arrays = {name: saved[name] for name in saved.files}
        meta = json.loads(arrays["meta"].tobytes())
        if meta.get("version") != VERSION or results.stat().st_size < meta["covered"]:
            return None
        running = _hash_prefix(results, meta["covered"])
        if running.hexdigest() != meta["sha256"]:
            return None
        statuses = meta["statuses"]
        shas = arrays["stat_sha"].tobytes()
        stats = {key: (identity, shas[i * SHA_BYTES:(i + 1) * SHA_BYTES], statuses[status])
                 for i, (key, identity, status) in enumerate(zip(arrays["stat_keys"].tolist(),
                                                                 arrays["stat_identity"].tolist(),
                                                                 arrays["stat_status"].tolist()))}
        index = {"covered": meta["covered"], "lines": meta["lines"], "counts": meta["counts"],
                 "versions": set(arrays["versions"].tolist()), "stats": stats,
                 "judged": dict(zip(arrays["judged_keys"].tolist(), arrays["judged_offsets"].tolist()))}
    except (OSError, ValueError, KeyError, IndexError, TypeError, EOFError, zipfile.BadZipFile):
        return None  # missing, torn or foreign: rebuilt from the lines
    return index, running


def _hash_prefix(path: Path, length: int, block: int = 1 << 20) -> hashlib._Hash:
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
