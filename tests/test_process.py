"""The process as a service runs it: the umask, and third-party warnings in the journal."""

from __future__ import annotations

import stat
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_threads_writing_at_once_never_change_the_umask(tmp_path):
    """Three threads setting the umask to 0 and back once left it 0 for good: files became world-writable.

    Runs in a fresh interpreter with umask 027 and a tiny switch interval, so the threads interleave
    inside any umask(0)/umask(old) pair if one is still there.
    """
    script = textwrap.dedent(f"""
        import os, sys, threading
        os.umask(0o027)
        sys.setswitchinterval(1e-6)
        from edgecxr.fsutil import atomic_write_bytes, current_umask
        wrong = []
        def work(n):
            for i in range(20000):  # what the DICOM store, the export and every atomic write ask
                if current_umask() != 0o027:
                    wrong.append(i)
                if i % 100 == 0:
                    atomic_write_bytes(os.path.join({str(tmp_path)!r}, f"{{n}}-{{i % 500}}.bin"), b"x", sync_dir=False)
        threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
        for t in threads: t.start()
        for t in threads: t.join(120)
        print(oct(os.umask(0o027)), len(wrong))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0o27", "0"]  # the umask as set, and no thread ever saw another
    files = sorted(tmp_path.glob("*.bin"))
    assert len(files) == 30
    modes = {oct(stat.S_IMODE(f.stat().st_mode)) for f in files}
    assert modes == {oct(0o640)}, modes  # 0666 & ~027: never world-writable, never 0600
