"""A stopped or killed export leaves no `.NAME.partial-*` folder behind (at the latest, after the next export)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.tools import wait_for


def _start_export(run: Path, out: Path) -> subprocess.Popen:
    # FP32 and OpenVINO with the gate: long enough (tens of seconds) to be stopped in the middle
    return subprocess.Popen([sys.executable, "-m", "edgecxr", "export", str(run), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "300"})


def _partial_with_work(out: Path) -> Path | None:
    """The export's partial folder once it has written something besides its owner record."""
    for folder in out.parent.glob(f".{out.name}.partial-*"):
        if any(p.name != ".owner.json" for p in folder.rglob("*")):
            return folder
    return None


def test_sigterm_removes_the_partial_folder(trained_run, tmp_path):
    out = tmp_path / "bundle"
    proc = _start_export(trained_run, out)
    try:
        partial = wait_for(lambda: _partial_with_work(out), 120, poll=0.05)
        assert partial, proc.communicate(timeout=60)
        assert json.loads((partial / ".owner.json").read_text())["pid"] == proc.pid
        proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr
    assert time.monotonic() - stopped < 30
    assert list(tmp_path.iterdir()) == [], list(tmp_path.iterdir())  # neither the partial nor a bundle


def test_the_next_export_removes_the_partial_a_killed_one_left(trained_run, tmp_path):
    out = tmp_path / "bundle"
    proc = _start_export(trained_run, out)
    try:
        left = wait_for(lambda: _partial_with_work(out), 120, poll=0.05)
        assert left, proc.communicate(timeout=60)
        proc.send_signal(signal.SIGKILL)  # nothing can clean up after SIGKILL
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert left.is_dir()
    live = tmp_path / ".bundle.partial-live"  # an export still running (this test's own process) is left alone
    live.mkdir()
    (live / ".owner.json").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "start": None}))
    unknown = tmp_path / ".bundle.partial-old"  # no record: not ours to judge
    unknown.mkdir()
    done = subprocess.run([sys.executable, "-m", "edgecxr", "export", str(trained_run), "--out", str(out),
                           "--targets", "onnxruntime", "--no-gate"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "300"})
    assert done.returncode == 0, done.stderr
    assert not left.exists() and live.is_dir() and unknown.is_dir()
    assert f"removed {left.name}" in done.stdout + done.stderr
    assert not (out / ".owner.json").exists() and (out / "bundle.json").is_file()
