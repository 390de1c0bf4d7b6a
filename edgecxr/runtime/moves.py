"""Moving processed inputs out of the inbox (`--archive`, `--quarantine`) without losing one.

Same file system: an atomic rename, then both folders are fsynced so the new name survives a
power cut. Across file systems: copy to a temporary name in the destination, fsync it, verify
its sha256, rename it into place and fsync the destination folder; only then is the source
unlinked (and its folder fsynced). At every instant at least one complete, durable copy exists.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from edgecxr.data.fingerprint import sha256_file
from edgecxr.fsutil import fsync_dir


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
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    else:
        fsync_dir(target.parent)
        fsync_dir(src.parent)
        return target
    tmp = target.with_name(f".{target.name}.copying")
    try:
        shutil.copy2(src, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        if sha256 and sha256_file(tmp) != sha256:
            raise OSError(f"copy of {src} to {target} does not match its sha256; source kept")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)  # the copy's name is durable before the original goes
    os.unlink(src)
    fsync_dir(src.parent)
    return target

