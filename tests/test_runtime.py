"""The device runtime: engine choice, watch (exactly once, crashes, signals, bad files), classify, status."""

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
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from edgecxr.cli.app import app
from edgecxr.core.bundle import load_bundle
from edgecxr.core.errors import EdgecxrError
from edgecxr.core.results import read_results
from edgecxr.runtime.classifier import Classifier
from edgecxr.runtime.selection import choose
from edgecxr.runtime.watcher import Watcher, WatchOptions
from tests.dicom_write import write_dx_dicom
from tests.tools import require_module, wait_for

require_module("onnxruntime")
require_module("openvino")
runner = CliRunner()
NO_VNNI = {"avx2": True, "avx512_vnni": False, "avx_vnni": False, "amx_int8": False}
VNNI = {"avx2": True, "avx512_vnni": True}


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def fill_inbox(folder: Path, images: list[Path], copies: int = 1) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for k in range(copies):
        for path in images:
            name = f"{k:03d}-{path.name}"
            shutil.copyfile(path, folder / name)
            names.append(name)
    return names


def lines_per_file(out: Path) -> Counter:
    return Counter(r["path"] for r in read_results(out))


# -- engine choice ------------------------------------------------------------------------

def test_auto_precision_follows_the_cpu_and_the_qualification(bundle_dir, tmp_path):
    from edgecxr.core.qualification import record

    bundle = load_bundle(bundle_dir)
    for features in (NO_VNNI, VNNI):  # never qualified here: FP32 whatever the CPU
        unqualified = choose(bundle, cpu_features=features, qualification_dir=tmp_path)
        assert (unqualified.artifact.backend, unqualified.artifact.precision) == ("openvino", "fp32")
        assert "openvino-int8 never checked" in unqualified.reason and "tensorrt" in unqualified.reason
    passed = {"verdict": "PASS", "agreement": 1.0, "flipped": [], "failures": []}
    record(bundle, [{"artifact": "openvino-int8", "backend": "openvino", **passed}],
           {"n_images": 20, "fingerprint": "0" * 64}, tmp_path)
    no_vnni = choose(bundle, cpu_features=NO_VNNI, qualification_dir=tmp_path)
    assert (no_vnni.artifact.backend, no_vnni.artifact.precision) == ("openvino", "fp32")
    assert "no VNNI/AMX" in no_vnni.reason
    vnni = choose(bundle, cpu_features=VNNI, qualification_dir=tmp_path)
    assert (vnni.artifact.backend, vnni.artifact.precision) == ("openvino", "int8")
    ort = choose(bundle, backend="onnxruntime", precision="int8", cpu_features=NO_VNNI, allow_unqualified=True,
                 qualification_dir=tmp_path)
    assert ort.artifact.name == "onnxruntime-int8"  # the CPU graph, not the TensorRT source
    assert "never checked" in ort.warning


def test_missing_backend_or_precision_is_a_clear_error(bundle_dir):
    bundle = load_bundle(bundle_dir)
    with pytest.raises(EdgecxrError, match="no engine in the bundle can run here") as info:
        choose(bundle, backend="tensorrt", cpu_features=NO_VNNI)
    assert "tensorrt: no artifact in the bundle" in str(info.value)
    with pytest.raises(EdgecxrError, match="no fp16 artifact"):
        choose(bundle, backend="onnxruntime", precision="fp16", cpu_features=NO_VNNI)


# -- watch --once ---------------------------------------------------------------------------

@pytest.fixture()
def bad_and_good_inbox(tmp_path, mini_test_images):
    from pydicom.data import get_testdata_file

    inbox = tmp_path / "inbox"
    fill_inbox(inbox, mini_test_images[:4])
    gray = np.asarray(Image.open(mini_test_images[0]).convert("L")) / 255.0
    write_dx_dicom(gray, inbox / "dx.dcm")
    write_dx_dicom(gray, inbox / "dx-mono1.dcm", photometric="MONOCHROME1")
    write_dx_dicom(gray, inbox / "dx-j2k", compress="jpeg2000")  # no extension, as PACS exports often are
    (inbox / "empty.png").write_bytes(b"")
    (inbox / "text.png").write_text("this is not an image\n")
    (inbox / "random.dcm").write_bytes(os.urandom(4096))
    data = mini_test_images[1].read_bytes()
    (inbox / "truncated.jpeg").write_bytes(data[: len(data) // 3])
    shutil.copyfile(get_testdata_file("CT_small.dcm"), inbox / "ct.dcm")
    shutil.copyfile(get_testdata_file("rtplan.dcm"), inbox / "rtplan.dcm")
    return inbox


def test_watch_once_one_line_per_file_with_reasons(bundle_dir, bad_and_good_inbox, tmp_path):
    inbox, out = bad_and_good_inbox, tmp_path / "out"
    quarantine, archive = tmp_path / "quarantine", tmp_path / "archive"
    files = sorted(p.name for p in inbox.iterdir())
    result = run("watch", inbox, "--bundle", bundle_dir, "--out", out, "--once", "--settle-seconds", 0,
                 "--archive", archive, "--quarantine", quarantine)
    assert result.exit_code == 0, result.output
    records = {r["path"]: r for r in read_results(out)}
    assert sorted(records) == files
    assert lines_per_file(out).most_common(1)[0][1] == 1
    ok = {p for p, r in records.items() if r["status"] == "ok"}
    assert ok == {p for p in files if p.endswith(".jpeg") and "truncated" not in p} | {
        "dx.dcm", "dx-mono1.dcm", "dx-j2k"}
    codes = {p: r["error"]["code"] for p, r in records.items() if r["status"] == "error"}
    assert codes == {"empty.png": "empty", "text.png": "not_an_image", "random.dcm": "not_dicom",
                     "truncated.jpeg": "corrupt"}
    assert all(records[p]["error"]["message"] for p in codes)
    # not chest radiographs: the gate's tags stage says so before any pixel is decoded
    scope = {p: r["gate"] for p, r in records.items() if r["status"] == "out_of_scope"}
    assert sorted(scope) == ["ct.dcm", "rtplan.dcm"] and all(g["stage"] == "tags" for g in scope.values())
    assert "CT" in scope["ct.dcm"]["reason"]
    # MONOCHROME1 is shown like MONOCHROME2: same picture, same probabilities
    assert records["dx.dcm"]["probabilities"] == pytest.approx(records["dx-mono1.dcm"]["probabilities"], abs=1e-4)
    # identifiers travel, patient data does not
    assert records["dx.dcm"]["dicom"]["AccessionNumber"] == "ACC0001"
    text = (out / "results.jsonl").read_text()
    assert "Doe" not in text and "PID-SECRET" not in text and "20200101" not in text
    # inputs moved after their lines were durable; nothing left in the inbox
    assert sorted(p.name for p in archive.iterdir()) == sorted(ok)
    assert sorted(p.name for p in quarantine.iterdir()) == sorted([*codes, *scope])
    assert not list(inbox.iterdir())
    again = run("watch", inbox, "--bundle", bundle_dir, "--out", out, "--once", "--settle-seconds", 0)
    assert again.exit_code == 0 and len(read_results(out)) == len(files)


def test_rtplan_without_pixels_is_refused_when_modality_allowed(bundle_dir, tmp_path):
    from pydicom.data import get_testdata_file

    inbox = tmp_path / "in"
    inbox.mkdir()
    shutil.copyfile(get_testdata_file("rtplan.dcm"), inbox / "rtplan.dcm")
    run("watch", inbox, "--bundle", bundle_dir, "--out", tmp_path / "o", "--once", "--settle-seconds", 0,
        "--modality", "RTPLAN,CR,DX")
    assert read_results(tmp_path / "o")[0]["error"]["code"] == "no_pixel_data"


def test_pixel_limit_and_symlink_outside(bundle_dir, tmp_path, mini_test_images):
    inbox = tmp_path / "in"
    fill_inbox(inbox, mini_test_images[:1])
    outside = tmp_path / "secret.jpeg"
    shutil.copyfile(mini_test_images[2], outside)
    (inbox / "link.jpeg").symlink_to(outside)
    result = run("watch", inbox, "--bundle", bundle_dir, "--out", tmp_path / "o", "--once", "--settle-seconds", 0,
                 "--max-pixels", 1000)
    assert result.exit_code == 0
    records = read_results(tmp_path / "o")
    assert [r["path"] for r in records] == ["000-" + mini_test_images[0].name]
    assert records[0]["error"]["code"] == "too_large"
    assert "outside the inbox" in result.stderr


def test_out_inside_inbox_is_not_scanned(bundle_dir, tmp_path, mini_test_images):
    inbox = tmp_path / "in"
    fill_inbox(inbox, mini_test_images[:2])
    out = inbox / "results"
    for _ in range(2):
        run("watch", inbox, "--bundle", bundle_dir, "--out", out, "--once", "--recursive", "--settle-seconds", 0)
    assert sorted(lines_per_file(out)) == sorted(p.name for p in inbox.iterdir() if p.is_file())


def test_changed_file_is_a_new_version(bundle_dir, tmp_path, mini_test_images):
    inbox, out = tmp_path / "in", tmp_path / "o"
    fill_inbox(inbox, mini_test_images[:1])
    name = next(inbox.iterdir()).name
    run("watch", inbox, "--bundle", bundle_dir, "--out", out, "--once", "--settle-seconds", 0)
    shutil.copyfile(mini_test_images[5], inbox / name)
    os.utime(inbox / name, ns=(time.time_ns(), time.time_ns() + 10**9))
    run("watch", inbox, "--bundle", bundle_dir, "--out", out, "--once", "--settle-seconds", 0)
    records = read_results(out)
    assert [r["path"] for r in records] == [name, name]
    assert records[0]["sha256"] != records[1]["sha256"]


# -- watching live: slow writers, renames --------------------------------------------------------

def _start_watcher(bundle_dir, inbox, out, **kw):
    bundle = load_bundle(bundle_dir)
    classifier = Classifier(bundle, choose(bundle, backend="onnxruntime", precision="fp32"))
    watcher = Watcher(classifier, WatchOptions(inbox=inbox, out=out, rescan_seconds=0.5, **kw), log=lambda m: None)
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    return watcher, stop, thread




def test_slow_chunked_writes_and_renames_are_read_once_complete(bundle_dir, tmp_path, mini_test_images):
    """Each file gets exactly one line, read only once complete; a temporary name is never read.

    A control file written after the temporary one is the clock: once the control file has its
    line, the watcher has scanned the temporary file after it sat unchanged for a full settle time.
    """
    inbox, out = tmp_path / "in", tmp_path / "o"
    inbox.mkdir()
    watcher, stop, thread = _start_watcher(bundle_dir, inbox, out, settle_seconds=1.5)
    try:
        slow = mini_test_images[3].read_bytes()
        with open(inbox / "slow.jpeg", "wb") as handle:  # five chunks, 0.3 s apart (well under the settle time)
            for i in range(5):
                handle.write(slow[i * len(slow) // 5:(i + 1) * len(slow) // 5])
                handle.flush()
                time.sleep(0.3)  # the writer's pace, not a wait for the watcher
        part = inbox / "renamed.jpeg.part"
        part.write_bytes(mini_test_images[4].read_bytes()[:100])
        shutil.copyfile(mini_test_images[5], inbox / "control-1.jpeg")
        assert wait_for(lambda: "control-1.jpeg" in lines_per_file(out))
        assert "renamed.jpeg.part" not in lines_per_file(out)
        part.write_bytes(mini_test_images[4].read_bytes())
        part.rename(inbox / "renamed.jpeg")
        assert wait_for(lambda: "renamed.jpeg" in lines_per_file(out))
        shutil.copyfile(mini_test_images[6], inbox / "control-2.jpeg")  # later scans add no second line
        assert wait_for(lambda: "control-2.jpeg" in lines_per_file(out))
    finally:
        stop.set()
        watcher.wake.set()
        thread.join(15)
    assert lines_per_file(out) == Counter({"slow.jpeg": 1, "control-1.jpeg": 1, "renamed.jpeg": 1, "control-2.jpeg": 1})
    records = {r["path"]: r for r in read_results(out)}
    assert all(r["status"] == "ok" for r in records.values())
    from edgecxr.core.data.fingerprint import sha256_file

    assert records["slow.jpeg"]["sha256"] == sha256_file(mini_test_images[3])
    assert records["renamed.jpeg"]["sha256"] == sha256_file(mini_test_images[4])
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "stopped" and status["processed"] == 4


# -- crashes and signals (a real process) -----------------------------------------------------------

def _spawn_watch(bundle_dir, inbox, out, *extra):
    cmd = [sys.executable, "-m", "edgecxr", "watch", str(inbox), "--bundle", str(bundle_dir), "--out", str(out),
           "--backend", "onnxruntime", "--precision", "fp32", "--batch-size", "2", "--settle-seconds", "0",
           "--quiet", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_sigkill_mid_burst_then_restart_gives_every_file_exactly_one_line(bundle_dir, tmp_path, mini_test_images):
    inbox, out = tmp_path / "in", tmp_path / "o"
    names = fill_inbox(inbox, mini_test_images, copies=10)  # 200 files: far more than one poll interval's work
    proc = _spawn_watch(bundle_dir, inbox, out)
    assert wait_for(lambda: (out / "results.jsonl").exists() and len(read_results(out)) >= 6, 60)
    proc.kill()  # SIGKILL, mid-burst
    proc.wait(10)
    first = len(read_results(out))
    assert first < len(names)
    with open(out / "results.jsonl", "a") as handle:  # and a torn line, as a crash mid-write leaves
        handle.write('{"schema":"edgecxr.result/1","path":"' + names[-1] + '","size":12')
    restart = _spawn_watch(bundle_dir, inbox, out, "--once")
    _, err = restart.communicate(timeout=120)
    assert restart.returncode == 0, err
    assert "repaired results.jsonl" in err
    counts = lines_per_file(out)
    assert sorted(counts) == sorted(names)
    assert set(counts.values()) == {1}


def test_sigterm_finishes_the_batch_and_exits_zero(bundle_dir, tmp_path, mini_test_images):
    inbox, out = tmp_path / "in", tmp_path / "o"
    names = fill_inbox(inbox, mini_test_images, copies=4)
    proc = _spawn_watch(bundle_dir, inbox, out)
    assert wait_for(lambda: (out / "results.jsonl").exists() and len(read_results(out)) >= 4, 60)
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    proc.wait(15)
    assert proc.returncode == 0
    assert time.time() - sent < 10
    text = (out / "results.jsonl").read_text()
    assert text.endswith("\n")  # no torn line: the batch in flight was finished
    assert set(lines_per_file(out).values()) == {1}
    assert json.loads((out / "status.json").read_text())["state"] == "stopped"
    assert len(read_results(out)) <= len(names)


# -- classify and status ------------------------------------------------------------------------------

def test_classify_json_and_saved_model_input(bundle_dir, tmp_path, mini_test_images):
    result = run("classify", *mini_test_images[:2], "--bundle", bundle_dir, "--json", "--save-input", tmp_path)
    assert result.exit_code == 0, result.output
    objects = [json.loads(chunk) for chunk in result.stdout.replace("}\n{", "}\x00{").split("\x00")]
    assert [o["status"] for o in objects] == ["ok", "ok"]
    assert set(objects[0]["probabilities"]) == {"NORMAL", "PNEUMONIA"}
    saved = sorted(tmp_path.glob("*.model-input.png"))
    assert len(saved) == 2 and Image.open(saved[0]).size == (64, 64)


def test_classify_table_and_refusal_exit_code(bundle_dir, tmp_path, mini_test_images):
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    result = run("classify", mini_test_images[0], bad, tmp_path / "missing.png", tmp_path, "--bundle", bundle_dir,
                 "--json")
    assert result.exit_code == 2  # as every input error
    objects = [json.loads(chunk) for chunk in result.stdout.replace("}\n{", "}\x00{").split("\x00")]
    codes = [o.get("error", {}).get("code", o["status"]) for o in objects]
    assert codes == ["ok", "not_an_image", "not_found", "not_a_file"]
    assert "no such file" in objects[2]["error"]["message"] and "a folder" in objects[3]["error"]["message"]
    table = run("classify", mini_test_images[0], bad, "--bundle", bundle_dir)
    assert table.exit_code == 2 and "refused: not_an_image" in table.stdout and "NORMAL" in table.stdout


def test_status_command(bundle_dir, tmp_path, mini_test_images):
    inbox = tmp_path / "in"
    fill_inbox(inbox, mini_test_images[:2])
    run("watch", inbox, "--bundle", bundle_dir, "--once", "--settle-seconds", 0)
    result = run("status", inbox / ".edgecxr")
    assert result.exit_code == 1, result.output  # a stopped watcher is not healthy: docs/troubleshooting.md
    assert "classified 2" in result.stdout and "state: stopped" in result.stdout and "no heartbeat" in result.stdout
    assert run("status", inbox / ".edgecxr", "--json").exit_code == 1
    status_file = inbox / ".edgecxr" / "status.json"
    data = json.loads(status_file.read_text())
    now = datetime.now(timezone.utc)
    status_file.write_text(json.dumps({**data, "state": "running", "updated": now.isoformat()}))
    fresh = run("status", inbox / ".edgecxr")
    assert fresh.exit_code == 0, fresh.output
    assert run("status", inbox / ".edgecxr", "--json").exit_code == 0
    old = (now - timedelta(hours=1)).isoformat()
    status_file.write_text(json.dumps({**data, "state": "running", "updated": old}))
    stale = run("status", inbox / ".edgecxr")
    assert stale.exit_code == 1 and "stale" in stale.stdout and "no heartbeat" in stale.stdout
    missing = run("status", tmp_path)
    assert missing.exit_code == 2 and "no status.json" in missing.stderr


def test_no_bundle_anywhere_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGECXR_BUNDLE", raising=False)
    import edgecxr.runtime.default_bundle as default

    monkeypatch.setattr(default, "PACKAGED", tmp_path / "none")
    result = run("classify", tmp_path / "x.png")
    assert result.exit_code == 2 and "--bundle" in result.stderr


def test_json_log_lines_for_journald(bundle_dir, tmp_path, mini_test_images):
    inbox = tmp_path / "in"
    fill_inbox(inbox, mini_test_images[:1])
    (inbox / "bad.png").write_text("nope")
    result = run("watch", inbox, "--bundle", bundle_dir, "--once", "--settle-seconds", 0, "--log-format", "json",
                 "--quiet")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events][:2] == ["start", "engine"]
    assert all({"time", "message", "event"} <= set(e) for e in events)
    assert "reason" in events[1]


def test_packaged_samples_classify_with_dicom_identifiers(bundle_dir):
    from edgecxr.samples import SAMPLE_DIR

    dicoms = sorted(SAMPLE_DIR.glob("*.dcm"))
    assert len(dicoms) == 3
    result = run("classify", *dicoms, "--bundle", bundle_dir, "--json")
    assert result.exit_code == 0, result.output
    objects = [json.loads(chunk) for chunk in result.stdout.replace("}\n{", "}\x00{").split("\x00")]
    assert all(o["status"] == "ok" and o["dicom"]["Modality"] == "DX" for o in objects)
    assert "PID-SECRET" not in result.stdout


def test_dicom_without_pydicom_is_left_for_later_not_lost(bundle_dir, tmp_path, mini_test_images):
    """A box without the [dicom] extra: the DICOM gets no line (so it is read once pydicom is there)."""
    inbox, out = tmp_path / "in", tmp_path / "o"
    fill_inbox(inbox, mini_test_images[:1])
    gray = np.asarray(Image.open(mini_test_images[0]).convert("L")) / 255.0
    write_dx_dicom(gray, inbox / "dx.dcm")
    blocker = ("import importlib.abc, sys\n"
               "class Block(importlib.abc.MetaPathFinder):\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] == 'pydicom':\n"
               "            raise ImportError('pydicom blocked')\n"
               "sys.meta_path.insert(0, Block())\n"
               "from edgecxr.cli.app import main\n"
               "main()\n")
    cmd = [sys.executable, "-c", blocker, "watch", str(inbox), "--bundle", str(bundle_dir), "--out", str(out),
           "--once", "--settle-seconds", "0", "--quiet"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "cannot read dx.dcm yet" in first.stderr and "edgecxr[dicom]" in first.stderr
    assert [r["path"] for r in read_results(out)] == ["000-" + mini_test_images[0].name]
    second = run("watch", inbox, "--bundle", bundle_dir, "--out", out, "--once", "--settle-seconds", 0)
    assert second.exit_code == 0
    assert sorted(lines_per_file(out)) == sorted(["000-" + mini_test_images[0].name, "dx.dcm"])
