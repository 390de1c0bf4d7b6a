"""`/metrics` checked by the real Prometheus tools (Debian package `prometheus`): `promtool check
metrics` on the output of a live `edgecxr watch --http`, `promtool check rules` and `test rules`
on deploy/prometheus/, and a real Prometheus server on loopback scraping that watcher."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin
from typer.testing import CliRunner

from edgecxr.cli.app import app
from edgecxr.core.bundle import manifest_checksum
from edgecxr.core.results import read_results, read_status
from edgecxr.runtime.default_bundle import PACKAGED
from edgecxr.web.metrics import render
from tests.browser import start_watch
from tests.tools import require_tool, stop_process, wait_for

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
SAMPLES = Path(__file__).resolve().parent.parent / "edgecxr" / "samples" / "chest-xrays"
# a bundle whose validation images were almost all analysed PNEUMONIA: the samples (half NORMAL) are drift
# the shipped bundle's own validation figures, but for a label share far from the samples' (half
# NORMAL), so the label check, and only it, must warn
VALIDATION = {**json.loads((PACKAGED / "bundle.json").read_text())["gate"]["validation"],
              "label_shares": {"NORMAL": 0.02, "PNEUMONIA": 0.98}}
IMAGES = 60  # more than drift's MIN_IMAGES (50), so a check may warn


def gated_bundle(folder: Path) -> Path:
    """The packaged reference bundle with validation figures in its manifest (re-checksummed), as
    export writes them once the gate exists; the engines are linked, not copied."""
    folder.mkdir()
    for entry in PACKAGED.iterdir():
        if entry.name != "bundle.json":
            (folder / entry.name).symlink_to(entry)
    manifest = json.loads((PACKAGED / "bundle.json").read_text())
    manifest["gate"] = {**manifest.get("gate", {}), "validation": VALIDATION}
    manifest["checksum"] = manifest_checksum(manifest)
    (folder / "bundle.json").write_text(json.dumps(manifest))
    return folder


def in_scope_samples() -> list[Path]:
    """The sample JPEGs the shipped bundle's gate lets through on the engine the watcher runs, so
    every copy is classified (the gate refuses about 1 % of in-scope images by design)."""
    from edgecxr.backends import RunnerOptions
    from edgecxr.core.bundle import load_bundle
    from edgecxr.runtime.classifier import Classifier
    from edgecxr.runtime.prepare import InputLimits, prepare
    from edgecxr.runtime.selection import choose

    bundle = load_bundle(PACKAGED)
    classifier = Classifier(bundle, choose(bundle, "onnxruntime", "auto", allow_unqualified=True), RunnerOptions())
    kept = []
    for path in sorted(SAMPLES.glob("*.jpeg")):
        item = prepare(path, bundle.spec, InputLimits(), classifier.gate)
        if item.tensor is not None and classifier.submit(item.tensor[None])()[1][0][1] is None:
            kept.append(path)
    classifier.close()
    return kept


def get(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.headers["Content-Type"], response.read()


def samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value of every sample line."""
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


@pytest.fixture(scope="module")
def watcher(tmp_path_factory):
    """A live `edgecxr watch --http 127.0.0.1:0` that has classified 60 images and refused one file."""
    root = tmp_path_factory.mktemp("metrics")
    inbox, out = root / "inbox", root / "out"
    inbox.mkdir()
    proc, url = start_watch(inbox, out, "--bundle", str(gated_bundle(root / "bundle")), "--backend", "onnxruntime",
                            "--allow-unqualified")
    try:
        images = in_scope_samples()
        for i in range(IMAGES):  # each copy its own file (a PNG with its number in a text chunk), so
            path = images[i % len(images)]  # none is the same image sent again: 60 classifications
            info = PngImagePlugin.PngInfo()
            info.add_text("copy", str(i))
            Image.open(path).save(inbox / f".part-{i}", format="PNG", pnginfo=info)
            (inbox / f".part-{i}").rename(inbox / f"{i:02d}-{path.stem}.png")
        (inbox / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not the rest of a PNG")
        done = wait_for(lambda: (read_status(out) or {}).get("processed") == IMAGES and
                        (read_status(out) or {}).get("drift", {}).get("images") == IMAGES + 1, 180, poll=0.5)
        assert done, f"the watcher did not record {IMAGES + 1} results: {read_status(out)}"
        yield url, out
    finally:
        stop_process(proc)


def test_live_metrics_pass_promtool_and_carry_counts_drift_and_latency(watcher):
    promtool = require_tool("promtool")
    url, out = watcher
    kind, body = get(url + "metrics")
    assert kind.startswith("text/plain; version=0.0.4")
    check = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check
    text = body.decode()
    values = samples(text)
    status = read_status(out)
    assert values["edgecxr_classified_total"] == IMAGES
    code = status["refused_by_code"]
    assert list(code.values()) == [1] and values[f'edgecxr_refused_total{{code="{next(iter(code))}"}}'] == 1
    assert values["edgecxr_watcher_running"] == 1
    assert values["edgecxr_inference_duration_seconds_count"] == IMAGES
    assert values['edgecxr_inference_duration_seconds_bucket{le="+Inf"}'] == IMAGES
    assert 0 < values["edgecxr_inference_duration_seconds_sum"] < 60
    assert values["edgecxr_drift_window_images"] == IMAGES + 1 and values["edgecxr_drift_baseline"] == 1
    assert values["edgecxr_drift_expected_out_of_scope_ratio"] == VALIDATION["refusal_rate"]
    assert values['edgecxr_drift_expected_label_share_ratio{label="PNEUMONIA"}'] == 0.98
    shares = {k: v for k, v in values.items() if k.startswith("edgecxr_drift_label_share_ratio")}
    assert sum(shares.values()) == pytest.approx(1.0)
    normal = [r for r in read_results(out) if r.get("label") == "NORMAL"]
    assert shares['edgecxr_drift_label_share_ratio{label="NORMAL"}'] == pytest.approx(len(normal) / IMAGES)
    assert len(normal) >= 12  # the samples are half NORMAL: far above 2%, so the label check warns
    assert values['edgecxr_drift_warning{check="label_share",label="NORMAL"}'] == 1
    assert values['edgecxr_drift_p_value{check="label_share",label="NORMAL"}'] < 0.001
    assert values['edgecxr_drift_warning{check="out_of_scope_rate",label=""}'] == 0  # no gate refusals
    warning = next(c for c in status["drift"]["checks"] if c.get("label") == "NORMAL")["message"]
    assert status["drift"]["warnings"] == [warning]  # PNEUMONIA's share is the same test: one sentence
    shown = CliRunner().invoke(app, ["status", str(out)])
    assert " ".join(warning.split()) in " ".join(shown.output.split()), shown.output  # `edgecxr status` says it
    for name in ("edgecxr_classified_total", "edgecxr_inference_duration_seconds", "edgecxr_drift_p_value"):
        assert f"# HELP {name} " in text and f"# TYPE {name} " in text


def test_metrics_of_a_sending_drifting_watcher_pass_promtool():
    """Every family at once (PACS counts, warnings, label values to escape), rendered from a heartbeat."""
    promtool = require_tool("promtool")
    status = {"state": "running", "updated": "2030-01-01T00:00:00+00:00", "heartbeat_s": 2.0, "edgecxr": "1.0",
              "started": "2030-01-01T00:00:00+00:00", "bundle": 'odd "name"\\', "backend": "openvino",
              "precision": "int8", "processed": 10, "backlog": 2, "waiting": 1, "inbox_error": "gone",
              "refused_by_code": {"not_an_image": 2}, "out_of_scope_by_code": {"blank": 3, "modality": 1},
              "inference_ms": {"le_ms": [5, 10], "counts": [1, 2, 3], "sum_ms": 60.5, "count": 6},
              "sending": {"queued": 1, "destinations": [{"destination": "PACS@10.0.0.1:104", "sent": 7,
                                                         "pending": 2, "failed": 1, "committed": 6,
                                                         "awaiting_commitment": 1}]},
              "drift": {"images": 200, "baseline": VALIDATION, "checks": [
                  {"name": "out_of_scope_rate", "observed": 0.09, "expected": 0.01, "p_value": 2e-7, "warning": True},
                  {"name": "label_share", "label": "NORMAL", "observed": 0.3, "expected": 0.375, "p_value": 0.2,
                   "warning": False}]}}
    text = render(status, now=1893456010.0)
    check = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check
    values = samples(text)
    assert values["edgecxr_watcher_running"] == 1 and values["edgecxr_heartbeat_age_seconds"] == 10
    assert values["edgecxr_inbox_unavailable"] == 1
    assert values['edgecxr_sr_sent_total{destination="PACS@10.0.0.1:104"}'] == 7
    assert values['edgecxr_sr_committed_total{destination="PACS@10.0.0.1:104"}'] == 6
    assert values['edgecxr_sr_awaiting_commitment{destination="PACS@10.0.0.1:104"}'] == 1
    assert values['edgecxr_out_of_scope_total{code="blank"}'] == 3
    assert values['edgecxr_inference_duration_seconds_bucket{le="0.01"}'] == 3
    assert values['edgecxr_drift_warning{check="out_of_scope_rate",label=""}'] == 1
    assert 'bundle="odd \\"name\\"\\\\"' in text
    assert samples(render(None)) == {"edgecxr_watcher_running": 0}


def test_rules_and_config_pass_promtool_and_fire_when_they_should():
    promtool = require_tool("promtool")
    for args in (["check", "rules", "edgecxr-rules.yml"], ["check", "config", "prometheus.yml"],
                 ["test", "rules", "edgecxr-rules.test.yml"]):
        result = subprocess.run([promtool, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "SUCCESS" in result.stdout, (args, result.stdout, result.stderr)


def get_rules(api: str) -> dict[str, dict]:
    _, body = get(api + "rules")
    return {r["name"]: r for g in json.loads(body)["data"]["groups"] for r in g["rules"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_real_prometheus_scrapes_the_live_watcher(watcher, tmp_path):
    prometheus = require_tool("prometheus")
    url, _ = watcher
    target = urllib.parse.urlsplit(url).netloc
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML: the deploy example's job and rules, this watcher's address
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(DEPLOY / "edgecxr-rules.yml")],
        "scrape_configs": [{"job_name": "edgecxr", "static_configs": [{"targets": [target]}]}]}))
    port = free_port()
    api = f"http://127.0.0.1:{port}/api/v1/"
    proc = subprocess.Popen([prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def query(expr: str) -> list:
            try:
                _, body = get(api + "query?" + urllib.parse.urlencode({"query": expr}))
            except OSError:
                return []
            return json.loads(body)["data"]["result"]

        up = wait_for(lambda: query('up{job="edgecxr"} == 1'), 60, poll=0.5)
        assert up and up[0]["metric"]["instance"] == target, f"the target never came up: {query('up')}"
        classified = wait_for(lambda: query("edgecxr_classified_total"), 30, poll=0.5)
        assert classified and float(classified[0]["value"][1]) == IMAGES
        expected = query('edgecxr_drift_expected_label_share_ratio{label="NORMAL"}')
        assert expected and float(expected[0]["value"][1]) == 0.02
        assert query('edgecxr_drift_warning{check="label_share", label="NORMAL"} == 1')
        rules = get_rules(api)
        assert set(rules) == {"EdgecxrWatcherDown", "EdgecxrDriftWarning"}
        assert all(r["health"] in ("ok", "unknown") for r in rules.values()), rules
        assert rules["EdgecxrWatcherDown"]["state"] == "inactive"
        drifting = wait_for(lambda: get_rules(api)["EdgecxrDriftWarning"]["state"] == "pending", 20, poll=0.5)
        assert drifting, get_rules(api)  # the warning holds for 15 minutes before the alert fires
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
