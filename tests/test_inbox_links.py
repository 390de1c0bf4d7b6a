"""The inbox as a hospital network leaves it (issue 22): links, pipes, resends, empty folders.

Every real file is read once however many links lead to it, folders are walked once by
(device, inode) so a link back up cannot loop, SIGTERM stops the watcher within 5 s, an image
judged before that comes again gets one "duplicate" line (never a second SR), and the study and
series folders archiving empties are removed. All on real files with the shipped reference bundle.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgecxr.cli import runtime_cmd
from edgecxr.cli.app import app
from edgecxr.core.bundle import load_bundle
from edgecxr.core.results import read_results
from edgecxr.runtime.classifier import Classifier
from edgecxr.runtime.default_bundle import resolve_bundle
from edgecxr.runtime.ledger import Ledger
from edgecxr.runtime.scanner import scan
from edgecxr.runtime.selection import choose
from edgecxr.runtime.watcher import Watcher, WatchOptions
from tests.tools import require_module, wait_for

require_module("onnxruntime")
runner = CliRunner()


def once(inbox: Path, out: Path, *extra):
    args = ["watch", inbox, "--out", out, "--once", "--settle-seconds", 0, "--backend", "onnxruntime", *extra]
    return runner.invoke(app, [str(a) for a in args])


def test_links_back_up_and_to_files_are_read_once_and_sigterm_stops_within_5_s(tmp_path, mini_test_images):
    inbox, out = tmp_path / "in", tmp_path / "out"
    (inbox / "a").mkdir(parents=True)
    (inbox / "b").mkdir()
    shutil.copyfile(mini_test_images[0], inbox / "a" / "IMG1.jpeg")
    for name in ("loop", "loop2", "loop3"):  # three links back up: 3^40 paths when followed
        (inbox / "a" / name).symlink_to("..", target_is_directory=True)
    (inbox / "b" / "same.jpeg").symlink_to("../a/IMG1.jpeg")  # a link to a file inside the inbox
    os.link(inbox / "a" / "IMG1.jpeg", inbox / "b" / "hard.jpeg")  # and a hard link: the same real file
    os.mkfifo(inbox / "b" / "IMG2.jpeg")  # opening it would block: refused without being opened
    cmd = [sys.executable, "-m", "edgecxr", "watch", str(inbox), "--out", str(out), "--settle-seconds", "0.1",
           "--rescan-seconds", "0.5", "--quiet", "--backend", "onnxruntime"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert wait_for(lambda: len(read_results(out)) >= 2, 60), "no results: the scan never finished"
        time.sleep(1.5)  # three more rescans: nothing new may appear
    finally:
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail("the watcher did not stop within 5 s of SIGTERM")
    assert time.monotonic() - stopped_at < 5 and proc.returncode == 0, err
    got = {r["path"]: r.get("error", {}).get("code", r["status"]) for r in read_results(out)}
    assert got == {"a/IMG1.jpeg": "ok", "b/IMG2.jpeg": "not_a_file"}, got


def test_a_scan_returns_at_once_when_asked_to_stop(tmp_path):
    for k in range(50):
        (tmp_path / f"s{k}" / "series").mkdir(parents=True)
        (tmp_path / f"s{k}" / "series" / "IMG").write_bytes(b"x")
    stop = threading.Event()
    assert len(scan(tmp_path, recursive=True, exclude=[], stop=stop).files) == 50
    stop.set()
    found = scan(tmp_path, recursive=True, exclude=[], stop=stop)
    assert found.stopped and found.files == {}


def _resent(source: Path, target: Path) -> None:
    """The same SOP instance sent again: other bytes (a new creation time), the same SOP Instance UID."""
    from pydicom import dcmread

    ds = dcmread(source)
    ds.InstanceCreationTime = "235959"
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target)


def _dicom(path: Path, image: Path) -> None:
    from PIL import Image

    from tests.dicom_write import write_dx_dicom

    path.parent.mkdir(parents=True, exist_ok=True)
    write_dx_dicom(np.asarray(Image.open(image).convert("L"), dtype=np.float32) / 255.0, path)


def test_a_resent_instance_or_a_copy_back_gets_one_duplicate_line_and_no_sr(tmp_path, mini_test_images):
    require_module("pydicom")
    inbox, out, archive, quarantine = (tmp_path / n for n in ("in", "out", "archive", "quarantine"))
    _dicom(inbox / "st1" / "se1" / "IMG1", mini_test_images[0])
    shutil.copyfile(mini_test_images[1], inbox / "chest.jpeg")
    keep = tmp_path / "kept"
    keep.mkdir()
    shutil.copyfile(inbox / "st1" / "se1" / "IMG1", keep / "IMG1")
    moves = ("--archive", archive, "--quarantine", quarantine)
    assert once(inbox, out, *moves).exit_code == 0
    first = {r["path"]: r for r in read_results(out)}
    assert set(first) == {"st1/se1/IMG1", "chest.jpeg"} and {r["status"] for r in first.values()} <= {
        "ok", "out_of_scope"}
    _resent(keep / "IMG1", inbox / "st1" / "se2" / "IMG1-again")  # the scanner sends the study again
    (inbox / "back").mkdir()
    shutil.copyfile(archive / "chest.jpeg", inbox / "back" / "chest.jpeg")  # archived, then copied back elsewhere
    shutil.copyfile(mini_test_images[1], inbox / "back" / "chest-2.jpeg")  # and a second copy in the same burst
    shutil.copyfile(archive / "st1" / "se1" / "IMG1", inbox / "st1" / "se1" / "IMG1")  # the same file, same name
    second = once(inbox, out, *moves)
    assert second.exit_code == 0, second.output
    records = read_results(out)
    later = {r["path"]: r for r in records[2:]}
    assert set(later) == {"st1/se2/IMG1-again", "back/chest.jpeg", "back/chest-2.jpeg"}
    assert {r["status"] for r in later.values()} == {"duplicate"}
    assert later["st1/se2/IMG1-again"]["duplicate_of"] == {
        "path": "st1/se1/IMG1", "completed_at": first["st1/se1/IMG1"]["completed_at"]}
    assert later["back/chest.jpeg"]["duplicate_of"]["path"] == "chest.jpeg"
    assert later["back/chest-2.jpeg"]["duplicate_of"]["path"] == "chest.jpeg"
    assert "duplicate" in second.stdout
    assert json.loads((out / "status.json").read_text())["duplicates"] == 3  # what monitoring sees
    # the archive holds one copy of each image, the duplicates wait in quarantine, the inbox is empty
    assert sorted(p.name for p in archive.rglob("*") if p.is_file()) == ["IMG1", "chest.jpeg"]
    assert sorted(p.name for p in quarantine.rglob("*") if p.is_file()) == ["IMG1-again", "chest-2.jpeg",
                                                                            "chest.jpeg"]
    assert not [p for p in inbox.rglob("*") if p.is_file() and ".edgecxr" not in p.parts]
    assert once(inbox, out, *moves).exit_code == 0 and len(read_results(out)) == 5  # and no sixth line
    require_module("pynetdicom")
    from edgecxr.dicomnet.sink import DicomSendSink

    assert DicomSendSink._job_uid(later["st1/se2/IMG1-again"]) is None  # no SR is built for a duplicate


def test_a_copy_in_the_same_burst_is_a_duplicate_and_a_refused_file_is_not_an_original(tmp_path,
                                                                                       mini_test_images):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    shutil.copyfile(mini_test_images[0], inbox / "a.jpeg")
    shutil.copyfile(mini_test_images[0], inbox / "b.jpeg")
    (inbox / "c.jpeg").write_bytes(b"not an image")
    assert once(inbox, out).exit_code == 0
    (inbox / "d.jpeg").write_bytes(b"not an image")  # the same unreadable bytes: refused again, not a duplicate
    assert once(inbox, out).exit_code == 0
    got = {r["path"]: (r["status"], (r.get("duplicate_of") or {}).get("path")) for r in read_results(out)}
    assert got == {"a.jpeg": ("ok", None), "b.jpeg": ("duplicate", "a.jpeg"), "c.jpeg": ("error", None),
                   "d.jpeg": ("error", None)}


def test_duplicates_are_found_by_line_offset_after_damaged_lines_are_set_aside(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    lines = [{"path": f"p{k}", "sha256": f"{k:064x}", "status": "ok", "completed_at": "2099-01-01T00:00:00+00:00",
              **({"dicom": {"SOPInstanceUID": f"1.2.{k}"}} if k % 2 else {})} for k in range(6)]
    text = "".join(json.dumps(r) + "\n" for r in lines[:3]) + "{damaged\n" + "".join(
        json.dumps(r) + "\n" for r in lines[3:])
    (out / "results.jsonl").write_text(text)
    ledger = Ledger(out)
    try:
        assert ledger.damaged_lines == [4]
        assert ledger.earlier(f"{4:064x}", None) == {"path": "p4", "completed_at": "2099-01-01T00:00:00+00:00"}
        assert ledger.earlier("f" * 64, "1.2.5")["path"] == "p5"  # other bytes, the same SOP Instance UID
        assert ledger.earlier("f" * 64, "1.2.4") is None  # p4 has no UID: nothing to match
        ledger.append([{"path": "p6", "sha256": "e" * 64, "status": "ok", "completed_at": "2099-01-02"},
                       {"path": "p7", "sha256": "d" * 64, "status": "error", "completed_at": "2099-01-02"}])
        assert ledger.earlier("e" * 64, None)["path"] == "p6"
        assert ledger.earlier("d" * 64, None) is None  # an unreadable file is no original
    finally:
        ledger.close()
    old = {"path": "old", "sha256": "c" * 64, "status": "ok", "completed_at": "2000-01-01T00:00:00+00:00"}
    with open(out / "results.jsonl", "a") as handle:
        handle.write(json.dumps(old) + "\n")
    reopened = Ledger(out)
    try:  # beyond the retention (DUPLICATE_DAYS): classified again
        assert reopened.earlier("c" * 64, None) is None and reopened.earlier("e" * 64, None)["path"] == "p6"
    finally:
        reopened.close()


@pytest.fixture(scope="module")
def classifier():
    bundle = load_bundle(resolve_bundle(None))
    opened = Classifier(bundle, choose(bundle, backend="onnxruntime", precision="fp32"))
    yield opened
    opened.close()


def test_emptied_study_folders_are_removed_once_quiet_and_nothing_else(classifier, tmp_path, mini_test_images):
    inbox, out, archive = tmp_path / "in", tmp_path / "out", tmp_path / "archive"
    for series in ("se1", "se2"):
        (inbox / "st1" / series).mkdir(parents=True)
        shutil.copyfile(mini_test_images[0 if series == "se1" else 1], inbox / "st1" / series / "IMG1")
    (inbox / "st2" / "se1").mkdir(parents=True)  # made by the scanner, nothing in it yet: never emptied by us
    options = WatchOptions(inbox=inbox, out=out, settle_seconds=0.1, rescan_seconds=0.2, archive=archive,
                           empty_folder_seconds=1.0)
    watcher, stop = Watcher(classifier, options, log=lambda _: None), threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: len(read_results(out)) == 2 and not list(inbox.rglob("IMG1")), 30)
        assert (inbox / "st1" / "se1").is_dir()  # not at once: a scanner may be between two images
        assert wait_for(lambda: not (inbox / "st1").exists(), 10), sorted(inbox.rglob("*"))
        time.sleep(1.5)
        assert inbox.is_dir() and (inbox / "st2" / "se1").is_dir()
    finally:
        stop.set()
        watcher.wake.set()
        thread.join(20)
    assert sorted(p.relative_to(archive).as_posix() for p in archive.rglob("IMG1")) == ["st1/se1/IMG1",
                                                                                      "st1/se2/IMG1"]


def test_once_keeps_only_the_last_rows_for_its_table(tmp_path, mini_test_images, monkeypatch):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    for k in range(3):
        shutil.copyfile(mini_test_images[k], inbox / f"{k}.jpeg")
    monkeypatch.setattr(runtime_cmd, "TABLE_ROWS", 2)
    result = once(inbox, out)
    assert result.exit_code == 0, result.output
    assert "the last 2 of 3 new results" in result.stdout and "3 new result(s) this run" in result.stdout
    assert Counter(r["path"] for r in read_results(out)) == {f"{k}.jpeg": 1 for k in range(3)}


def test_the_last_results_are_read_from_the_end_of_a_long_ledger(tmp_path):
    lines = [json.dumps({"path": f"study{k}/IMG", "sha256": f"{k:064x}", "status": "ok"}) for k in range(3000)]
    (tmp_path / "results.jsonl").write_text("\n".join(lines) + "\n" + '{"path": "torn')  # 300 kB, a torn tail
    every = read_results(tmp_path)
    assert len(every) == 3000
    assert read_results(tmp_path, last=50) == every[-50:] and read_results(tmp_path, last=5000) == every


def test_the_status_page_says_a_duplicate_was_sent_again_not_that_it_could_not_be_read():
    from edgecxr.web.feed import public_record

    shown = public_record(7, {"path": "st1/se2/IMG1-again", "status": "duplicate", "sha256": "a" * 64,
                              "duplicate_of": {"path": "st1/se1/IMG1", "completed_at": "2026-12-07T12:00:00+00:00"}})
    assert shown["status"] == "duplicate" and shown["error_code"] is None and shown["label"] is None
    assert shown["reason"] == "sent again: this image was already analysed as st1/se1/IMG1"
    assert "PACS" in shown["fix"]
