"""Qualification round trips on the shipped reference bundle (20 of its test images): parity-check
records per-engine verdicts with this box's hardware class; watch/classify/bench follow them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecxr.cli.app import app
from edgecxr.core.bundle import load_bundle
from edgecxr.core.data.folders import hash_and_check, scan_split
from edgecxr.core.errors import EdgecxrError
from edgecxr.core.qualification import SHIPPED, hardware_class, record_path, same_class
from edgecxr.core.reporting import build_report
from edgecxr.core.sysinfo import ISA_CAP_VARIABLES, cpu_info, int8_accelerated
from edgecxr.runtime.default_bundle import PACKAGED as REFERENCE_BUNDLE
from edgecxr.runtime.selection import choose
from tests.tools import require_module, require_tool

require_module("onnxruntime")
runner = CliRunner()
ORT = ("--backends", "onnxruntime")


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def subset_reference(mini, tmp_path_factory):
    """The shipped PyTorch report cut down to the 20 Kermany test images the repository carries."""
    split = scan_split(mini / "test", "test")
    hash_and_check(split.samples)
    full = json.loads((REFERENCE_BUNDLE / "report.json").read_text())
    rels = {s.rel for s in split.samples}
    rows = [r for r in full["rows"] if r["path"] in rels]
    assert len(rows) == len(rels) == 20  # the sample really is part of the reference test set
    report = build_report(rows, full["class_names"], meta={
        "positive_class": full["positive_class"], "model": full.get("model", {}),
        "data": {"root": str(mini / "test"), "split": "test", "fingerprint": split.fingerprint()}})
    path = tmp_path_factory.mktemp("ref") / "report.json"
    path.write_text(json.dumps(report))
    return path


@pytest.fixture(scope="module")
def bare_bundle(tmp_path_factory):
    """The shipped bundle without the verdicts it ships (qualification.json)."""
    from tests.helpers import copy_tree

    bundle = copy_tree(REFERENCE_BUNDLE, tmp_path_factory.mktemp("bare") / "reference")
    (bundle / SHIPPED).unlink()
    return bundle


@pytest.fixture(scope="module")
def qualified(subset_reference, mini, bare_bundle, tmp_path_factory):
    """A qualification folder after parity-check of the shipped bundle's ONNX Runtime engines here
    (without the verdicts it ships, so only this box's count)."""
    folder = tmp_path_factory.mktemp("qualification")
    out = tmp_path_factory.mktemp("parity")
    result = run("parity-check", bare_bundle, "--data", mini / "test", "--reference", subset_reference,
                 *ORT, "--out", out, "--qualification-dir", folder)
    assert result.exit_code == 0, result.output
    return folder, result.stdout, json.loads((out / "parity.json").read_text())


def test_parity_records_a_verdict_per_engine_with_the_hardware_class(qualified):
    folder, stdout, parity = qualified
    bundle = load_bundle(REFERENCE_BUNDLE)
    record = json.loads(record_path(bundle, folder).read_text())
    assert parity["qualification"] == str(record_path(bundle, folder))
    assert record["bundle"]["checksum"] == bundle.checksum
    assert set(record["engines"]) == {"onnxruntime-fp32", "onnxruntime-int8", "onnxruntime-int8-symmetric"}
    entry = record["engines"]["onnxruntime-int8"][0]
    assert entry["verdict"] == "PASS" and entry["images"] == 20 and entry["agreement"] >= 0.995
    hw = entry["hardware"]
    assert hw == hardware_class("onnxruntime")
    assert hw["isa"] == sorted(f for f, on in cpu_info()["features"].items() if on) and hw["backend_version"]
    assert "verdicts recorded as qualification" in stdout and "watch --precision auto runs here" in stdout


def test_auto_picks_the_qualified_int8_only_where_it_was_qualified(qualified, bare_bundle):
    folder, stdout, _ = qualified
    bundle = load_bundle(bare_bundle)
    choice = choose(bundle, qualification_dir=folder)
    if int8_accelerated(cpu_info()["features"]):
        assert choice.artifact.name == "onnxruntime-int8", choice.reason
        assert "qualified on this hardware class" in choice.reason
    else:
        assert choice.artifact.precision == "fp32" and "no VNNI/AMX" in choice.reason
    assert f"runs here: {choice.artifact.name}" in stdout  # parity-check names the same engine
    assert choice.warning is None


def test_without_a_record_auto_falls_back_to_fp32_and_int8_needs_the_flag(bare_bundle, tmp_path):
    bundle = load_bundle(bare_bundle)
    choice = choose(bundle, qualification_dir=tmp_path)
    assert choice.artifact.precision == "fp32"
    assert "never checked on" in choice.reason and "edgecxr parity-check" in choice.reason
    with pytest.raises(EdgecxrError, match="onnxruntime-int8 is not qualified"):
        choose(bundle, "onnxruntime", "int8", qualification_dir=tmp_path)
    forced = choose(bundle, "onnxruntime", "int8", allow_unqualified=True, qualification_dir=tmp_path)
    assert forced.artifact.name == "onnxruntime-int8" and "never checked" in forced.warning


def test_another_hardware_class_does_not_count(qualified, bare_bundle, tmp_path, monkeypatch):
    folder, _, _ = qualified
    bundle = load_bundle(bare_bundle)
    uncapped = choose(bundle, "onnxruntime", qualification_dir=folder)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # OpenVINO's cap; ONNX Runtime's MLAS ignores it
    capped = choose(bundle, "onnxruntime", qualification_dir=folder)
    assert (capped.artifact.name, capped.reason) == (uncapped.artifact.name, uncapped.reason)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    # the same record carried to a CPU with other INT8 features (as from an AVX2-only box)
    path = record_path(bundle, folder)
    record = json.loads(path.read_text())
    for entries in record["engines"].values():
        for entry in entries:
            entry["hardware"]["isa"] = ["avx2"]
    other = tmp_path / "other"
    other.mkdir()
    (other / path.name).write_text(json.dumps(record))
    moved = choose(bundle, qualification_dir=other)
    assert moved.artifact.precision == "fp32" and "never checked" in moved.reason


def _edgecxr(*args, cap: str | None = None) -> subprocess.CompletedProcess:
    """The real CLI in a child process, so OpenVINO's oneDNN reads ONEDNN_MAX_CPU_ISA when it loads."""
    env = {k: v for k, v in os.environ.items() if k not in ISA_CAP_VARIABLES["openvino"]}
    env |= {"ONEDNN_MAX_CPU_ISA": cap} if cap else {}
    return subprocess.run([sys.executable, "-m", "edgecxr.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env)


def test_an_isa_cap_makes_openvino_another_hardware_class(subset_reference, mini, bare_bundle, tmp_path):
    """ONEDNN_MAX_CPU_ISA=AVX2 really changes OpenVINO's INT8 kernels (and not ONNX Runtime's): the
    record says AVX2, qualifies only the capped class, and the engine choice names the cap."""
    require_module("openvino")
    folder, probs = tmp_path / "q", {}
    for cap in (None, "AVX2"):
        out = tmp_path / f"parity-{cap}"
        done = _edgecxr("parity-check", bare_bundle, "--data", mini / "test", "--reference", subset_reference,
                        "--precisions", "int8", "--out", out, "--qualification-dir", folder / str(cap), cap=cap)
        assert done.returncode in (0, 1), done.stderr
        engines = json.loads((out / "parity.json").read_text())["engines"]
        probs[cap] = {e["artifact"]: [r["probabilities"] for r in e["rows"]] for e in engines}
    native = cpu_info()["features"]
    assert probs[None]["onnxruntime-int8"] == probs["AVX2"]["onnxruntime-int8"]
    if int8_accelerated(native):  # VNNI kernels here, AVX2 ones under the cap: other sums, other answers
        assert probs[None]["openvino-int8"] != probs["AVX2"]["openvino-int8"]
    bundle = load_bundle(bare_bundle)
    record = json.loads(record_path(bundle, folder / "AVX2").read_text())
    hw = record["engines"]["openvino-int8"][0]["hardware"]
    assert hw["isa_caps"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"} and set(hw["isa"]) <= {"avx2"}
    assert record["engines"]["onnxruntime-int8"][0]["hardware"] == hardware_class("onnxruntime")
    here = choose(bundle, "openvino", "auto", qualification_dir=folder / "AVX2")  # no cap in this process
    assert here.artifact.precision == "fp32" and "never checked" in here.reason
    capped = _edgecxr("classify", mini / "test" / "NORMAL" / "IM-0001-0001.jpeg", "--bundle", bare_bundle,
                      "--backend", "openvino", "--qualification-dir", folder / "AVX2", cap="AVX2")
    assert capped.returncode == 0, capped.stderr
    assert "openvino-fp32" in capped.stdout and "dot-product instructions here" not in capped.stdout
    if int8_accelerated(native) and record["engines"]["openvino-int8"][0]["verdict"] == "PASS":
        assert "ONEDNN_MAX_CPU_ISA=AVX2 limits openvino" in " ".join(capped.stdout.split())


def test_failed_engine_is_refused_unless_allowed_and_warned_on_start(subset_reference, mini, tmp_path):
    folder = tmp_path / "q"
    result = run("parity-check", REFERENCE_BUNDLE, "--data", mini / "test", "--reference", subset_reference, *ORT,
                 "--precisions", "int8", "--max-accuracy-drop", "-1", "--out", tmp_path / "p",
                 "--qualification-dir", folder)
    assert result.exit_code == 1, result.output  # stricter than the defaults: recorded, and FAIL
    assert "recorded as qualification" in result.stdout
    forced = run("classify", mini / "test" / "NORMAL" / "IM-0001-0001.jpeg", "--bundle", REFERENCE_BUNDLE,
                 "--backend", "onnxruntime", "--precision", "int8", "--qualification-dir", folder)
    assert forced.exit_code == 2 and "FAIL on" in forced.stderr and "--allow-unqualified" in forced.stderr
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.jpeg").write_bytes((mini / "test" / "NORMAL" / "IM-0001-0001.jpeg").read_bytes())
    for _ in range(2):  # every start says it
        watched = run("watch", inbox, "--bundle", REFERENCE_BUNDLE, "--backend", "onnxruntime", "--precision", "int8",
                      "--allow-unqualified", "--qualification-dir", folder, "--once", "--settle-seconds", 0)
        assert watched.exit_code == 0, watched.output
        assert "warning: onnxruntime-int8 runs unqualified" in watched.stderr
    auto = choose(load_bundle(REFERENCE_BUNDLE), "onnxruntime", qualification_dir=folder)
    assert auto.artifact.name == "onnxruntime-fp32" and "FAIL on" in auto.reason


def test_the_verdicts_the_bundle_ships_count_on_their_hardware_class_only(tmp_path):
    bundle = load_bundle(REFERENCE_BUNDLE)
    shipped = json.loads((REFERENCE_BUNDLE / SHIPPED).read_text())
    assert shipped["bundle"]["checksum"] == bundle.checksum
    entry = shipped["engines"]["onnxruntime-int8"][0]
    assert entry["verdict"] == "PASS" and entry["images"] == 624 and entry["agreement"] >= 0.995
    choice = choose(bundle, "onnxruntime", qualification_dir=tmp_path)
    here = same_class(entry["hardware"], hardware_class("onnxruntime"))
    if here and int8_accelerated(cpu_info()["features"]):
        assert choice.artifact.name == "onnxruntime-int8" and "recorded by the bundle" in choice.reason
    else:
        assert choice.artifact.precision == "fp32"


def test_looser_tolerances_are_not_recorded(subset_reference, mini, tmp_path):
    result = run("parity-check", REFERENCE_BUNDLE, "--data", mini / "test", "--reference", subset_reference, *ORT,
                 "--precisions", "fp32", "--min-agreement", "0.5", "--out", tmp_path / "p",
                 "--qualification-dir", tmp_path / "q")
    assert result.exit_code == 0, result.output
    assert "not recorded as qualification" in result.stdout and not (tmp_path / "q").exists()


def test_cpuid_sees_what_an_emulated_cpu_offers():
    """qemu's Haswell has AVX2 and no VNNI, and is named so: CPUID says it, where /proc/cpuinfo shows the host."""
    qemu = require_tool("qemu-x86_64")
    code = ("import json; from edgecxr.core.cpuid import int8_features; from edgecxr.core.sysinfo import cpu_info; "
            "print(json.dumps([int8_features(), cpu_info()['model']]))")
    out = subprocess.run([qemu, "-cpu", "Haswell", sys.executable, "-S", "-c",
                          f"import sys; sys.path.insert(0, {str(REFERENCE_BUNDLE.parents[2])!r}); {code}"],
                         capture_output=True, text=True, timeout=120, check=True)
    features, model = json.loads(out.stdout.strip().splitlines()[-1])
    assert features["avx2"] and not features["avx512_vnni"] and not features["avx_vnni"] and not features["amx_int8"]
    assert "Haswell" in model  # the CPU edgecxr info and qualification records name, not the host


def test_service_install_qualifies_first(bundle_dir, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    exe = Path(sys.executable).with_name("edgecxr")
    args = ["service", "install", "--inbox", inbox, "--out", tmp_path / "out", "--bundle", bundle_dir,
            "--executable", exe, "--qualify", "--root", tmp_path / "root"]
    dry = run(*args, "--dry-run")
    assert dry.exit_code == 0 and "would qualify the bundle's engines on this box" in dry.stdout
    assert "EDGECXR_QUALIFICATION_DIR=/etc/edgecxr/qualification" in dry.stdout
    done = run(*args)
    assert done.exit_code == 0, done.output
    assert "watch --precision auto runs here" in done.stdout
    folder = tmp_path / "root" / "etc/edgecxr/qualification"
    record = json.loads(record_path(load_bundle(bundle_dir), folder).read_text())
    assert {"onnxruntime-fp32", "openvino-fp32"} <= set(record["engines"])


def test_two_parity_checks_finishing_together_keep_both_verdicts(tmp_path):
    import fcntl
    import threading

    from edgecxr.core.fsutil import atomic_write_json
    from edgecxr.core.qualification import record

    bundle = load_bundle(REFERENCE_BUNDLE)
    data = {"n_images": 4, "fingerprint": "f"}

    def engine(name: str) -> dict:
        return {"artifact": name, "backend": "onnxruntime", "verdict": "PASS", "agreement": 1.0,
                "flipped": [], "failures": []}

    path = record(bundle, [engine("onnxruntime-fp32")], data, tmp_path)
    with open(path.with_name(path.name + ".lock"), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another parity-check, between its read and its write
        second = threading.Thread(target=record, args=(bundle, [engine("onnxruntime-int8")], data, tmp_path))
        second.start()
        second.join(0.3)
        assert second.is_alive()  # it waits instead of reading a record that is about to change
        current = json.loads(path.read_text())
        current["engines"]["openvino-fp32"] = current["engines"]["onnxruntime-fp32"]
        atomic_write_json(path, current)
        fcntl.flock(held, fcntl.LOCK_UN)
    second.join(10)
    assert not second.is_alive()
    assert set(json.loads(path.read_text())["engines"]) == {"onnxruntime-fp32", "openvino-fp32", "onnxruntime-int8"}
