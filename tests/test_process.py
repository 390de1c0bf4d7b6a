"""The process as a service runs it: the umask, and third-party warnings in the journal."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.tools import require_module

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
        from edgecxr.core.fsutil import atomic_write_bytes, current_umask
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


def test_third_party_warnings_name_the_file_and_never_the_patient(tmp_path):
    """highdicom warns `The string "Zebedee Quux" is unlikely to represent the intended person name`,
    pydicom that a value is too long: under systemd stderr is the journal, so neither text may reach it."""
    pydicom = require_module("pydicom")
    require_module("highdicom")
    from pydicom import config

    from edgecxr.samples import SAMPLE_DIR

    inbox = tmp_path / "in"
    inbox.mkdir()
    source = sorted(SAMPLE_DIR.glob("*.dcm"))[0]
    mode = config.settings.writing_validation_mode
    config.settings.writing_validation_mode = config.IGNORE  # write what a careless modality writes
    try:
        named = pydicom.dcmread(source)
        named.PatientName = "Zebedee Quux"  # no ^: highdicom warns, quoting it, when the SR copies it
        named.save_as(inbox / "named.dcm")
        long = pydicom.dcmread(source)
        long.SOPInstanceUID = pydicom.uid.generate_uid()
        long.AccessionNumber = "ZEBEDEE-QUUX-ACCESSION-0001"  # SH allows 16: pydicom warns on reading it
        long.save_as(inbox / "long.dcm")
    finally:
        config.settings.writing_validation_mode = mode
    done = subprocess.run([sys.executable, "-m", "edgecxr", "watch", str(inbox), "--once", "--settle-seconds", "0",
                           "--send-sr", "PACS@127.0.0.1:9", "--send-retry-max", "1", "--log-format", "json"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    journal = done.stdout + done.stderr  # results.jsonl keeps the accession number on purpose; the log may not
    assert "Zebedee" not in journal and "ZEBEDEE" not in journal
    assert "unlikely to represent" not in journal and "exceeds the maximum length" not in journal
    messages = [json.loads(line)["message"] for line in done.stderr.splitlines() if line.startswith("{")]
    assert any(m.startswith("warning: highdicom UserWarning while reading SR ") for m in messages), messages
    # pydicom both logs and warns: one line, of whichever came first
    assert any(m.startswith("warning: pydicom ") and m.endswith(f"while reading {inbox / 'long.dcm'} (its text is "
                                                                "not logged: it may quote patient data)")
               for m in messages), messages
