"""Moving inputs out of the inbox: atomic on one filesystem, copy-verify-unlink across filesystems."""

import errno
import os
from pathlib import Path

import pytest

from edgecxr.core.data.fingerprint import sha256_file
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


@pytest.fixture
def across_filesystems(monkeypatch):
    """Every rename answers EXDEV, as the kernel does when source and destination sit on two file
    systems, so the copy-fsync-verify-unlink path runs on one disk (no second mount needed). The
    calls are recorded: a test sees that the move really tried to rename first."""
    tried = []

    def rename(src, dst, *args, **kwargs):
        tried.append((Path(src), Path(dst)))
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(src), None, str(dst))

    monkeypatch.setattr(os, "rename", rename)
    return tried


def test_across_filesystems_copy_verify_unlink(tmp_path, across_filesystems):
    src = tmp_path / "in" / "scan.dcm"
    src.parent.mkdir()
    src.write_bytes(os.urandom(50_000))
    digest = sha256_file(src)
    dest = tmp_path / "archive"
    moved = move(src, dest, "sub/scan.dcm", digest)
    assert across_filesystems == [(src, dest / "sub" / "scan.dcm")]  # renamed first, copied on EXDEV
    assert moved == dest / "sub" / "scan.dcm" and sha256_file(moved) == digest
    assert not src.exists()
    assert not list(dest.rglob(".*.copying"))


def test_across_filesystems_a_changed_file_stays(tmp_path, across_filesystems):
    src = tmp_path / "in" / "scan.dcm"
    src.parent.mkdir()
    src.write_bytes(b"content written after hashing")
    dest = tmp_path / "archive"
    with pytest.raises(OSError, match="does not match"):
        move(src, dest, "scan.dcm", "0" * 64)
    assert len(across_filesystems) == 1
    assert src.exists() and src.read_bytes() == b"content written after hashing"  # never deleted unverified
    assert list(dest.iterdir()) == []  # and no partial copy left behind
