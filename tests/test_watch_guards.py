"""The watcher never stops, never double-counts, never hides a problem (issue 10).

Each guard on its own: two watchers on one results folder, a damaged middle ledger line,
read-only results and archive folders, a vanished inbox, a replacement with the same name,
size and mtime, subfolders by default, the heartbeat under a long rescan interval. All use
the shipped reference bundle (no export needed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecxr.cli.app import app
from edgecxr.core.bundle import load_bundle
from edgecxr.core.errors import EdgecxrError
from edgecxr.core.results import read_results
from edgecxr.runtime.classifier import Classifier
from edgecxr.runtime.default_bundle import resolve_bundle
from edgecxr.runtime.selection import choose
from edgecxr.runtime.watcher import Watcher, WatchOptions
from tests.tools import require_module, require_tool, wait_for

require_module("onnxruntime")
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])




def once(inbox: Path, out: Path, *extra):
    return run("watch", inbox, "--out", out, "--once", "--settle-seconds", 0, "--backend", "onnxruntime", *extra)


@pytest.fixture(scope="module")
def classifier():
    bundle = load_bundle(resolve_bundle(None))
    opened = Classifier(bundle, choose(bundle, backend="onnxruntime", precision="fp32"))
    yield opened
    opened.close()


class Live:
    """A watcher on a thread, its log kept, stopped at the end of the test."""

    def __init__(self, classifier, inbox: Path, out: Path, **kw):
        self.lines: list[str] = []
        options = WatchOptions(inbox=inbox, out=out, settle_seconds=0.1, rescan_seconds=kw.pop("rescan_seconds", 0.3),
                               **kw)
        self.watcher = Watcher(classifier, options, log=self.lines.append)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.watcher.run(self.stop)
        except BaseException as exc:  # reported by the test, not lost on the thread
            self.error = exc

    def close(self):
        self.stop.set()
        self.watcher.wake.set()
        self.thread.join(20)
        assert not self.thread.is_alive() and self.error is None, self.error


def test_a_second_watcher_on_the_same_results_folder_exits_2_naming_the_first(classifier, tmp_path,
                                                                             mini_test_images):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    shutil.copyfile(mini_test_images[0], inbox / "a.jpeg")
    first = Live(classifier, inbox, out)
    try:
        assert wait_for(lambda: len(read_results(out)) == 1)
        second = once(inbox, out)
        assert second.exit_code == 2
        assert f"another watcher (pid {os.getpid()})" in second.stderr and "--out" in second.stderr
        status = run("status", out)
        assert f"lock: held by pid {os.getpid()}" in status.stdout
    finally:
        first.close()
    assert len(read_results(out)) == 1
    assert "lock: free" in run("status", out).stdout
    assert once(inbox, out).exit_code == 0  # the lock went with the first watcher


def test_a_damaged_middle_ledger_line_is_set_aside_not_a_crash_loop(tmp_path, mini_test_images):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    for k in range(3):
        shutil.copyfile(mini_test_images[k], inbox / f"{k}.jpeg")
    assert once(inbox, out).exit_code == 0
    ledger = out / "results.jsonl"
    lines = ledger.read_bytes().splitlines(keepends=True)
    damaged = b"".join([lines[0], b'{"schema":"edgecxr.result/1","pa\x00\xff garbage\n', lines[2]])
    ledger.write_bytes(damaged)  # the line for 1.jpeg is gone, a damaged one in its place
    shutil.copyfile(mini_test_images[3], inbox / "3.jpeg")
    again = once(inbox, out)
    assert again.exit_code == 0, again.output
    assert "1 damaged line(s) (line 2)" in again.stderr
    copies = list(out.glob("results.jsonl.damaged-*"))
    assert len(copies) == 1 and copies[0].read_bytes() == damaged  # kept whole
    counts = Counter(r["path"] for r in read_results(out))
    assert counts == {f"{k}.jpeg": 1 for k in range(4)}  # 1.jpeg classified again, nothing doubled
    third = once(inbox, out)
    assert third.exit_code == 0 and "damaged line" not in third.stderr and len(read_results(out)) == 4


def _without_write_override() -> list[str]:
    """The prefix that runs the watcher without root's power to write where the mode forbids it.

    Root ignores a folder's mode (CAP_DAC_OVERRIDE), so for root a 0555 folder is writable and the
    refusal would never happen. Dropping to another uid (nobody) made it happen, but nobody cannot
    reach an interpreter or package inside a clone whose folder only its owner may enter (a 0700
    home, `mktemp -d`). So the watcher stays root and loses only CAP_DAC_OVERRIDE (from its
    bounding and inheritable sets, so the exec'd interpreter never regains it): the kernel then
    answers EACCES to the probe write in the root-owned 0555 folder, exactly as it does for a
    service user on a folder it may not write. It keeps CAP_DAC_READ_SEARCH, so it still reads and
    traverses the clone wherever it lives, whoever owns it."""
    if os.geteuid() != 0:
        return []
    return [require_tool("setpriv"), "--bounding-set=-dac_override", "--inh-caps=-dac_override", "--"]


@pytest.mark.parametrize("which", ["--out", "--archive"])
def test_a_read_only_folder_is_refused_at_start_with_exit_2(which, tmp_path, mini_test_images):
    inbox, out, archive = tmp_path / "in", tmp_path / "out", tmp_path / "archive"
    for folder in (inbox, out, archive):
        folder.mkdir()
    shutil.copyfile(mini_test_images[0], inbox / "a.jpeg")
    read_only = out if which == "--out" else archive
    read_only.chmod(0o555)
    try:
        cmd = [*_without_write_override(), sys.executable, "-m", "edgecxr", "watch", str(inbox), "--out", str(out),
               "--archive", str(archive), "--once", "--settle-seconds", "0", "--backend", "onnxruntime"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"})
    finally:
        read_only.chmod(0o755)  # so that pytest can clean tmp_path up
    assert done.returncode == 2, done.stderr
    assert f"the {which} folder is not writable (Permission denied)" in done.stderr and "Fix:" in done.stderr
    assert "Traceback" not in done.stderr
    assert (inbox / "a.jpeg").exists() and not (out / "results.jsonl").exists()


def test_a_vanished_inbox_is_an_error_in_log_and_status_then_recovers(classifier, tmp_path, mini_test_images):
    inbox, out, away = tmp_path / "in", tmp_path / "out", tmp_path / "away"
    inbox.mkdir()
    live = Live(classifier, inbox, out, status_seconds=0.2)
    status = out / "status.json"
    try:
        assert wait_for(lambda: status.exists())
        inbox.rename(away)  # an unmounted share or a deleted folder
        assert wait_for(lambda: "does not exist" in (json.loads(status.read_text()).get("inbox_error") or ""))
        assert any(line.startswith("error: the inbox does not exist") for line in live.lines)
        shown = run("status", out)
        assert shown.exit_code == 1 and "inbox error" in shown.stdout
        away.rename(inbox)
        shutil.copyfile(mini_test_images[0], inbox / "back.jpeg")
        assert wait_for(lambda: [r["path"] for r in read_results(out)] == ["back.jpeg"])
        assert wait_for(lambda: json.loads(status.read_text())["inbox_error"] is None)
        assert any("readable again" in line for line in live.lines)
    finally:
        live.close()


def _same_size(data: bytes, size: int) -> bytes:
    assert len(data) <= size
    return data + b"\0" * (size - len(data))  # bytes after a JPEG's end marker are ignored by decoders


@pytest.mark.parametrize("archived", [True, False])
def test_same_name_size_and_mtime_but_new_content_is_classified(archived, tmp_path, mini_test_images):
    inbox, out, archive = tmp_path / "in", tmp_path / "out", tmp_path / "archive"
    inbox.mkdir()
    first, second = sorted(mini_test_images[:2], key=lambda p: p.stat().st_size)
    size = second.stat().st_size
    target = inbox / "scan.jpeg"
    target.write_bytes(_same_size(first.read_bytes(), size))
    mtime = target.stat().st_mtime_ns
    extra = ("--archive", archive) if archived else ()
    assert once(inbox, out, *extra).exit_code == 0
    target.write_bytes(second.read_bytes())  # a new image, written where the old one was
    os.utime(target, ns=(mtime, mtime))
    assert target.stat().st_size == size and target.stat().st_mtime_ns == mtime
    assert once(inbox, out, *extra).exit_code == 0
    records = read_results(out)
    assert [r["path"] for r in records] == ["scan.jpeg", "scan.jpeg"]
    assert records[0]["sha256"] != records[1]["sha256"]
    if archived:
        assert len(list(archive.iterdir())) == 2 and not target.exists()
    assert once(inbox, out, *extra).exit_code == 0 and len(read_results(out)) == 2  # and no third line


def test_subfolders_and_extensionless_files_are_read_by_default(tmp_path, mini_test_images):
    inbox, out = tmp_path / "in", tmp_path / "out"
    deep = inbox / "study1" / "series2"
    deep.mkdir(parents=True)
    shutil.copyfile(mini_test_images[0], deep / "IMG0001")
    flat = run("watch", inbox, "--out", tmp_path / "flat", "--once", "--settle-seconds", 0, "--no-recursive")
    assert flat.exit_code == 0 and read_results(tmp_path / "flat") == []
    assert once(inbox, out).exit_code == 0
    [record] = read_results(out)
    assert record["path"] == "study1/series2/IMG0001" and record["status"] == "ok"


def test_heartbeat_every_two_seconds_whatever_the_rescan_interval(classifier, tmp_path):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    live = Live(classifier, inbox, out, rescan_seconds=120, poll=True)
    status = out / "status.json"
    try:
        assert wait_for(lambda: status.exists())
        first = json.loads(status.read_text())
        assert first["heartbeat_s"] == 2.0
        assert wait_for(lambda: json.loads(status.read_text())["updated"] != first["updated"], 6)
        shown = run("status", out)
        assert shown.exit_code == 0 and "no heartbeat" not in shown.stdout
    finally:
        live.close()


def test_watch_on_a_file_or_a_missing_folder_says_so(tmp_path, mini_test_images):
    result = run("watch", mini_test_images[0], "--once")
    assert result.exit_code == 2 and "is a file, not a folder" in result.stderr and "classify" in result.stderr
    missing = run("watch", tmp_path / "nope", "--once")
    assert missing.exit_code == 2 and "does not exist" in missing.stderr


def test_results_folder_lost_after_the_checks_stops_with_exit_2(classifier, tmp_path, mini_test_images):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    shutil.copyfile(mini_test_images[0], inbox / "a.jpeg")
    watcher = Watcher(classifier, WatchOptions(inbox=inbox, out=out, once=True, settle_seconds=0), log=lambda m: None)
    (tmp_path / "gone").write_text("a file where the results folder was")
    watcher.options.out = tmp_path / "gone" / "out"  # as if the folder vanished after the start-up check
    with pytest.raises(EdgecxrError, match="results folder") as info:
        watcher.run(threading.Event())
    assert info.value.exit_code == 2 and info.value.fix


def test_a_failing_engine_stops_the_watcher_with_exit_2_and_loses_nothing(tmp_path, mini_test_images):
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    shutil.copyfile(mini_test_images[0], inbox / "a.jpeg")
    bundle = load_bundle(resolve_bundle(None))
    broken = Classifier(bundle, choose(bundle, backend="onnxruntime", precision="fp32"))
    broken.runner.close()  # an engine that can no longer run (a lost device, a dead session)
    watcher = Watcher(broken, WatchOptions(inbox=inbox, out=out, once=True, settle_seconds=0), log=lambda m: None)
    with pytest.raises(EdgecxrError, match="inference engine onnxruntime-fp32 failed") as info:
        watcher.run(threading.Event())
    assert info.value.exit_code == 2
    assert read_results(out) == [] and (inbox / "a.jpeg").exists()  # no line: classified on the next start
    assert once(inbox, out).exit_code == 0 and len(read_results(out)) == 1
