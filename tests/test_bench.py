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
