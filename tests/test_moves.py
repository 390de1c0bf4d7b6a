"""Moving inputs out of the inbox: atomic on one filesystem, copy-verify-unlink across filesystems."""

import os
import tempfile
from pathlib import Path

import pytest

from edgecxr.data.fingerprint import sha256_file
from edgecxr.runtime.moves import move


def test_same_filesystem_rename_keeps_both_versions(tmp_path):
    src = tmp_path / "in" / "a.png"
    src.parent.mkdir()
    src.write_bytes(b"one")
    first = move(src, tmp_path / "archive", "a.png", sha256_file(src))
    assert first == tmp_path / "archive" / "a.png" and not src.exists()
    src.write_bytes(b"two")
    digest = sha256_file(src)
    second = move(src, tmp_path / "archive", "a.png", digest)
    assert second.name == f"a.{digest[:12]}.png" and first.read_bytes() == b"one"


def _other_filesystem(path: Path) -> Path | None:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and os.stat(shm).st_dev != os.stat(path).st_dev:
        return shm
    return None


def test_across_filesystems_copy_verify_unlink(tmp_path):
    other = _other_filesystem(tmp_path)
    if other is None:
        pytest.skip("no second writable filesystem here")
    src = tmp_path / "scan.dcm"
    src.write_bytes(os.urandom(50_000))
    digest = sha256_file(src)
    with tempfile.TemporaryDirectory(dir=other) as dest:
        moved = move(src, Path(dest), "sub/scan.dcm", digest)
        assert moved == Path(dest) / "sub" / "scan.dcm" and sha256_file(moved) == digest
        assert not src.exists()
        assert not list(Path(dest).rglob(".*.copying"))


def test_across_filesystems_a_changed_file_stays(tmp_path):
    other = _other_filesystem(tmp_path)
    if other is None:
        pytest.skip("no second writable filesystem here")
    src = tmp_path / "scan.dcm"
    src.write_bytes(b"content written after hashing")
    with tempfile.TemporaryDirectory(dir=other) as dest, pytest.raises(OSError, match="does not match"):
        move(src, Path(dest), "scan.dcm", "0" * 64)
    assert src.exists()  # never deleted when the copy cannot be verified
