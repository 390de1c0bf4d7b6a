"""Content fingerprints, so that two reports are only ever compared on the same data."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def dataset_fingerprint(pairs: Iterable[tuple[str, str]]) -> str:
    """sha256 over the sorted (relative path, file sha256) pairs.

    Paths are POSIX-style and relative to the split's root, so the fingerprint does not
    depend on where the data set lives or on the operating system.
    """
    digest = hashlib.sha256()
    for rel, file_hash in sorted(pairs):
        digest.update(f"{rel}\t{file_hash}\n".encode())
    return digest.hexdigest()
