"""Moving processed inputs out of the inbox (`--archive`, `--quarantine`) without losing one.

Same filesystem: an atomic rename. Across filesystems: copy to a temporary name in the
destination, fsync, verify the sha256, rename into place, and only then unlink the source.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from edgecxr.data.fingerprint import sha256_file


def destination(root: Path, rel: str, sha256: str) -> Path:
    target = root / rel
    if target.exists():  # an earlier version under the same name: keep both
        target = target.with_name(f"{target.stem}.{sha256[:12]}{target.suffix}")
    return target


def move(src: Path, root: Path, rel: str, sha256: str) -> Path:
    target = destination(root, rel, sha256)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(src, target)
        return target
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    tmp = target.with_name(f".{target.name}.copying")
    shutil.copy2(src, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    if sha256 and sha256_file(tmp) != sha256:
        tmp.unlink()
        raise OSError(f"copy of {src} to {target} does not match its sha256; source kept")
    os.replace(tmp, target)
    os.unlink(src)
    return target
