"""bench produces every column for each installed backend, on real images, with the PyTorch baseline."""

import json

from typer.testing import CliRunner

from edgecxr.cli.app import app
from tests.tools import require_module

require_module("onnxruntime")
require_module("openvino")


def test_bench_rows_and_columns(bundle_dir, tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", str(bundle_dir), "--iterations", "3", "--warmup", "1",
                                      "--batch-sizes", "1,2", "--threads", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["schema"] == "edgecxr.bench/1"
    engines = {r["engine"]: r for r in data["rows"]}
    assert {"pytorch-eager", "onnxruntime-fp32", "onnxruntime-int8", "openvino-fp32", "openvino-int8"} <= set(engines)
    for row in data["rows"]:
        assert "error" not in row, row
        assert row["load_s"] > 0 and row["first_inference_ms"] > 0 and row["peak_rss_mb"] > 10
        assert set(row["latency_ms"]) == {"mean", "p50", "p90", "p99"}
        assert set(row["throughput_ips"]) == {"1", "2"} and all(v > 0 for v in row["throughput_ips"].values())
        assert row["speedup_vs_pytorch"] > 0
    assert data["inputs"]["images"] >= 4 and data["inputs"]["shape"] == [3, 64, 64]
    assert data["threads"] == 1 and data["cpu"]["model"]
    assert data["recommendation"].startswith("pick ")
    assert "img/s b=2" in result.stdout and "recommendation" in result.stdout


def test_bench_bad_batch_sizes(bundle_dir):
    result = CliRunner().invoke(app, ["bench", str(bundle_dir), "--batch-sizes", "one"])
    assert result.exit_code == 2 and "--batch-sizes" in result.stderr


def test_bench_against_pairs_rounds_and_prints_ratios(bundle_dir, onnx_bundle, tmp_path):
    """Every engine of both bundles is measured in each round; an engine the reference lacks has no ratio."""
    out = tmp_path / "against.json"
    result = CliRunner().invoke(app, ["bench", str(bundle_dir), "--against", str(onnx_bundle), "--precisions", "fp32",
                                      "--rounds", "2", "--iterations", "3", "--warmup", "1", "--threads", "1",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["schema"] == "edgecxr.bench-against/1" and data["rounds"] == 2
    engines = {e["engine"]: e for e in data["engines"]}
    assert set(engines) == {"onnxruntime-fp32", "openvino-fp32"}
    shared = engines["onnxruntime-fp32"]
    assert len(shared["rounds_ms"]["candidate"]) == len(shared["rounds_ms"]["reference"]) == 2
    pairs = [c / r for c, r in zip(shared["rounds_ms"]["candidate"], shared["rounds_ms"]["reference"], strict=True)]
    assert abs(shared["ratio"] - sum(pairs) / 2) < 1e-9  # the median of two paired ratios is their mean
    only = engines["openvino-fp32"]
    assert only["ratio"] is None and only["reference_p50_ms"] is None and only["candidate_p50_ms"] > 0
    fastest = data["fastest"]
    assert fastest["reference_engine"] == "onnxruntime-fp32"
    assert fastest["candidate_engine"] in engines and fastest["ratio"] > 0
    assert data["inputs"]["candidate_shape"] == data["inputs"]["reference_shape"] == [3, 64, 64]
    assert "fastest engines:" in result.stdout and "ratio" in result.stdout


def test_bench_against_limit_sets_exit_code(bundle_dir, onnx_bundle):
    args = ["bench", str(onnx_bundle), "--against", str(bundle_dir), "--backends", "onnxruntime", "--precisions",
            "fp32", "--rounds", "1", "--iterations", "2", "--warmup", "0", "--threads", "1"]
    over = CliRunner().invoke(app, [*args, "--max-ratio", "0.001"])
    assert over.exit_code == 1 and "above the limit 0.001x" in over.stdout, over.output
    within = CliRunner().invoke(app, [*args, "--max-ratio", "1000"])
    assert within.exit_code == 0 and "within the limit 1000x" in within.stdout, within.output


def test_bench_max_ratio_needs_against(bundle_dir):
    for extra in (["--max-ratio", "2"], ["--rounds", "5"]):
        result = CliRunner().invoke(app, ["bench", str(bundle_dir), *extra])
        assert result.exit_code == 2 and "--against" in result.stderr


def test_bench_against_an_engine_failing_midway_is_named_and_blocks_the_limit(bundle_dir, onnx_bundle, tmp_path,
                                                                             monkeypatch):
    """The reference's OpenVINO engine fails in round 2 (a fault injected around the real measurement):
    the fastest-engine ratio then leaves it out, says so, and cannot pass a --max-ratio check."""
    import edgecxr.bench.against as against

    real = against.measure_engine
    calls = {"n": 0}

    def failing_midway(backend, path, inputs_path, *args):
        if backend == "openvino" and str(inputs_path).endswith("reference.npy"):
            calls["n"] += 1
            if calls["n"] == 2:
                return {"error": "RuntimeError: injected"}
        return real(backend, path, inputs_path, *args)

    monkeypatch.setattr(against, "measure_engine", failing_midway)
    out = tmp_path / "against.json"
    args = ["bench", str(onnx_bundle), "--against", str(bundle_dir), "--precisions", "fp32", "--rounds", "3",
            "--iterations", "2", "--warmup", "0", "--threads", "1"]
    result = CliRunner().invoke(app, [*args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["failed"] == [{"side": "reference", "engine": "openvino-fp32", "error": "RuntimeError: injected"}]
    assert data["fastest"]["reference_engine"] == "onnxruntime-fp32"
    assert "without openvino-fp32 of the reference" in " ".join(result.stdout.split())
    calls["n"] = 0
    limited = CliRunner().invoke(app, [*args, "--max-ratio", "1000"])
    assert limited.exit_code == 2 and "cannot judge the 1000x limit" in " ".join(limited.stderr.split()), limited.output


def test_bench_against_a_side_with_no_engine_measured_is_an_error(bundle_dir, onnx_bundle, monkeypatch):
    import edgecxr.bench.against as against

    real = against.measure_engine

    def reference_fails(backend, path, inputs_path, *args):
        if str(inputs_path).endswith("reference.npy"):
            return {"error": "RuntimeError: injected"}
        return real(backend, path, inputs_path, *args)

    monkeypatch.setattr(against, "measure_engine", reference_fails)
    result = CliRunner().invoke(app, ["bench", str(bundle_dir), "--against", str(onnx_bundle), "--precisions",
                                      "fp32", "--rounds", "1", "--iterations", "2", "--warmup", "0", "--threads",
                                      "1", "--max-ratio", "2"])
    assert result.exit_code == 2, result.output
    assert "no engine of the reference bundle could be measured (onnxruntime-fp32: RuntimeError: injected)" in \
        " ".join(result.stderr.split())
