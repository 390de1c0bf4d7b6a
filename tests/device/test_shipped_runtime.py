"""The device runtime as it ships: the real `edgecxr` command, the bundled reference model and samples.

These run in the torch-free demo environment (`make test-device`: only the runtime extras and
pytest), so they prove that watch, classify, status, parity-check and bench need nothing from
the workstation stages.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from edgecxr.core.data.fingerprint import dataset_fingerprint
from edgecxr.core.reporting import build_report
from edgecxr.runtime.default_bundle import PACKAGED
from edgecxr.samples import SAMPLE_DIR
from tests.tools import not_applicable

if importlib.util.find_spec("torch") is not None:
    not_applicable("the device tests run in the torch-free demo environment: make test-device")

FAKE_PATIENT = ("Doe^Jane", "PID-SECRET", "20200101")  # what the sample DICOMs carry (samples/README.md)
JPEGS = sorted(SAMPLE_DIR.glob("*.jpeg"))
DICOMS = sorted(SAMPLE_DIR.glob("*.dcm"))


def edgecxr(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgecxr", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def report_path(sample: Path) -> str:
    """NORMAL-IM-0010-0001.jpeg -> NORMAL/IM-0010-0001.jpeg, its row in the bundle's PyTorch report."""
    label, _, name = sample.name.partition("-")
    return f"{label}/{name}"


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    inbox = tmp_path_factory.mktemp("inbox")
    for sample in SAMPLE_DIR.iterdir():
        if sample.suffix in (".jpeg", ".dcm"):
            shutil.copyfile(sample, inbox / sample.name)
    out = inbox.parent / "results"
    result = edgecxr("watch", inbox, "--once", "--out", out, "--settle-seconds", 0)
    return inbox, out, result


def test_no_workstation_library_here():
    for name in ("torch", "transformers", "onnx", "nncf"):
        assert importlib.util.find_spec(name) is None, name


def test_watch_once_gives_every_sample_one_line(watched):
    _, out, result = watched
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert Counter(r["path"] for r in records) == Counter(p.name for p in JPEGS + DICOMS)
    # every sample is a frontal paediatric chest radiograph: the intended-use gate may refuse
    # one of them by chance (it refuses about 1 % of in-scope images by design), with its reason
    refused = [r for r in records if r["status"] != "ok"]
    assert len(refused) <= 1 and all(r["status"] == "out_of_scope" and r["gate"]["reason"] for r in refused)
    assert all("gate" in r and r["gate"]["score"] <= r["gate"]["threshold"] for r in records if r["status"] == "ok")
    assert "P(PNEUMONIA)" in result.stdout  # the bundle's positive class heads the table
    assert "27 new result(s)" in result.stdout


def test_watch_agrees_with_the_pytorch_report(watched):
    _, out, _ = watched
    report = json.loads((PACKAGED / "report.json").read_text())
    pytorch = {r["path"]: r["prediction"] for r in report["rows"]}
    lines = [json.loads(line) for line in (out / "results.jsonl").open()]
    labels = {r["path"]: r["label"] for r in lines if r["status"] == "ok"}
    classified = [p for p in JPEGS if p.name in labels]  # all but at most the gate's one false refusal
    agree = sum(labels[p.name] == pytorch[report_path(p)] for p in classified)
    assert len(classified) >= len(JPEGS) - 1 and agree >= len(classified) - 1, \
        f"{agree} of {len(classified)} agree with PyTorch"


def test_dicom_results_carry_identifiers_but_no_patient_data(watched):
    _, out, _ = watched
    text = (out / "results.jsonl").read_text()
    assert not any(value in text for value in FAKE_PATIENT)
    dicom = [json.loads(line) for line in text.splitlines() if line and json.loads(line)["path"].endswith(".dcm")]
    assert len(dicom) == 3 and all(r["dicom"]["SOPInstanceUID"] and r["dicom"]["Modality"] == "DX" for r in dicom)


def test_status_after_watch(watched):
    _, out, _ = watched
    result = edgecxr("status", out)
    assert result.returncode == 1, result.stderr  # a stopped watcher: no heartbeat, as a monitor must see it
    assert "state: stopped" in result.stdout
    data = json.loads(edgecxr("status", out, "--json").stdout)
    assert data["processed"] + data["out_of_scope"] == 27 and data["out_of_scope"] <= 1
    assert data["refused"] == 0 and data["bundle"] == "reference-micro-128"
    assert f"classified {data['processed']}" in result.stdout


def test_classify_jpeg_dicom_and_a_refusal(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    result = edgecxr("classify", JPEGS[0], DICOMS[0], bad, "--json")
    assert result.returncode == 2  # one file refused: an input error, exit 2 as every other
    objects, text = [], result.stdout
    decoder = json.JSONDecoder()
    while text.strip():
        obj, end = decoder.raw_decode(text.lstrip())
        objects.append(obj)
        text = text.lstrip()[end:]
    assert [o["status"] for o in objects] == ["ok", "ok", "error"]
    assert objects[1]["dicom"]["Modality"] == "DX" and objects[2]["error"]["code"] == "not_an_image"
    assert set(objects[0]["probabilities"]) == {"NORMAL", "PNEUMONIA"}


def test_parity_check_on_the_samples(tmp_path):
    """parity-check against the bundle's PyTorch report, restricted to the 24 sample JPEGs it contains."""
    data = tmp_path / "test"
    for sample in JPEGS:
        target = data / report_path(sample)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sample, target)
    full = json.loads((PACKAGED / "report.json").read_text())
    wanted = {report_path(p) for p in JPEGS}
    rows = [r for r in full["rows"] if r["path"] in wanted]
    meta = {k: full[k] for k in ("model", "preprocess", "engine", "positive_class")}
    meta["data"] = {"root": "test", "split": "test", "skipped_bad": [],
                    "fingerprint": dataset_fingerprint((r["path"], r["sha256"]) for r in rows)}
    reference = tmp_path / "report.json"
    reference.write_text(json.dumps(build_report(rows, full["class_names"], meta=meta)))
    out = tmp_path / "parity"
    result = edgecxr("parity-check", "--data", data, "--reference", reference, "--out", out,
                     "--max-accuracy-drop", 5, "--max-recall-drop", 10, "--min-agreement", 0.95)
    assert result.returncode == 0, result.stdout + result.stderr
    verdicts = json.loads((out / "parity.json").read_text())
    assert verdicts["data"]["n_images"] == 24
    assert {e["artifact"] for e in verdicts["engines"]} >= {"onnxruntime-fp32", "openvino-fp32", "openvino-int8"}
    fp32 = [e for e in verdicts["engines"] if e["artifact"].endswith("fp32")]
    assert all(e["agreement"] == 1.0 for e in fp32)


def test_bench_on_the_samples(tmp_path):
    out = tmp_path / "bench.json"
    result = edgecxr("bench", "--data", SAMPLE_DIR, "--iterations", 5, "--warmup", 1, "--batch-sizes", "1,2",
                     "--no-pytorch", "--json", out)
    assert result.returncode == 0, result.stderr
    bench = json.loads(out.read_text())
    engines = {r["engine"]: r for r in bench["rows"]}
    assert set(engines) == {"onnxruntime-fp32", "onnxruntime-int8", "onnxruntime-int8-symmetric",
                            "openvino-fp32", "openvino-int8"}
    assert all(r["latency_ms"]["p50"] > 0 and r["throughput_ips"]["2"] > 0 for r in engines.values())
    assert bench["recommendation"].startswith("pick ")
