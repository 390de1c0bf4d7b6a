"""OpenVINO burst throughput, batch-1 latency and restart compile time (printed ratios, not tests).

- burst: images/s of the runner on batches of 8 handed over as the watcher does (the next
  batch submitted before the previous one is collected; one async request per image on a
  THROUGHPUT compilation) vs OpenVINO's own `benchmark_app -hint throughput` on the same IR,
  both with f32 input and f32 inference precision, and the settings each side ran with;
- graph: CPU time per image of the static batch-1 graph the runner compiles vs the IR's
  dynamic-batch graph (CPU time, unlike images/s, hardly moves with a neighbour's load);
- latency: the runner's batch-1 p50 (LATENCY compilation) vs PyTorch eager's;
- restart: time to open the runner with a warm CACHE_DIR vs without a cache.

Every measurement runs in a fresh child process; rounds alternate between the methods so
that a neighbour's load on a shared machine hits them alike, and medians are reported.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edgecxr.bench.measure import in_child
from edgecxr.core.errors import EdgecxrError


def _options(threads, async_bursts=True, cache_dir=None):
    from edgecxr.backends import RunnerOptions

    return RunnerOptions(threads=threads, async_bursts=async_bursts, cache_dir=cache_dir)


def compiled_settings(compiled) -> dict:
    """What a compiled model runs with, under benchmark_app's names, to set beside its report."""
    keys = ("NUM_STREAMS", "OPTIMAL_NUMBER_OF_INFER_REQUESTS", "INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT")
    found = {k: str(compiled.get_property(k)) for k in keys}
    found["input"] = f"{compiled.input(0).get_element_type().to_string()} {compiled.input(0).get_partial_shape()}"
    return found


def _burst_child(conn, ir: str, inputs_path: str, batch: int, seconds: float, threads, async_bursts: bool):
    """Batches handed over as the watcher does: batch k+1 submitted before batch k is collected."""
    try:
        from edgecxr.backends import open_runner

        inputs = np.load(inputs_path)
        runner = open_runner("openvino", Path(ir), _options(threads, async_bursts))
        chunks = [inputs[i:i + batch] for i in range(0, len(inputs) - batch + 1, batch)]
        runner.infer(chunks[0])  # compiles the burst path, warms up
        done, start = 0, time.perf_counter()
        pending = runner.submit(chunks[0])
        while time.perf_counter() - start < seconds:
            following = runner.submit(chunks[(done + 1) % len(chunks)])
            pending.result()
            pending, done = following, done + 1
        pending.result()
        rate = (done + 1) * batch / (time.perf_counter() - start)
        compiled = getattr(runner, "_streams" if async_bursts else "compiled", None)
        conn.send({"images_per_s": rate, "settings": compiled_settings(compiled) if compiled else {}})
    except Exception as exc:  # the row shows the error, the other measurements still run
        conn.send({"error": f"{type(exc).__name__}: {exc}"})


def _graph_child(conn, ir: str, inputs_path: str, seconds: float, threads, static: bool):
    """Single-image requests on a THROUGHPUT compilation of the static batch-1 or the dynamic graph."""
    try:
        import openvino as ov

        from edgecxr.backends.openvino.runner import batch_of_one, compile_config

        inputs = np.load(inputs_path)
        core = ov.Core()
        model = core.read_model(ir)
        compiled = core.compile_model(batch_of_one(model) if static else model, "CPU",
                                      compile_config(_options(threads), "CPU", "THROUGHPUT"))
        queue = ov.AsyncInferQueue(compiled, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        for i in range(4):
            queue.start_async({0: inputs[i % len(inputs)][None]})
        queue.wait_all()
        done, start, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - start < seconds:
            queue.start_async({0: inputs[done % len(inputs)][None]})
            done += 1
        queue.wait_all()
        conn.send({"cpu_ms_per_image": 1000 * (time.process_time() - cpu) / done,
                   "images_per_s": done / (time.perf_counter() - start)})
    except Exception as exc:
        conn.send({"error": f"{type(exc).__name__}: {exc}"})


def _open_child(conn, ir: str, inputs_path: str, threads, cache_dir):
    try:
        from edgecxr.backends import open_runner

        inputs = np.load(inputs_path)
        start = time.perf_counter()
        runner = open_runner("openvino", Path(ir), _options(threads, cache_dir=cache_dir))
        runner.infer(inputs[:1])
        conn.send({"open_s": time.perf_counter() - start})
    except Exception as exc:
        conn.send({"error": f"{type(exc).__name__}: {exc}"})


def _latency_child(conn, ir: str, inputs_path: str, runs: int, threads):
    try:
        from edgecxr.backends import open_runner

        inputs = np.load(inputs_path)
        runner = open_runner("openvino", Path(ir), _options(threads))
        for i in range(3):
            runner.infer(inputs[i % len(inputs)][None])
        times = []
        for i in range(runs):
            start = time.perf_counter()
            runner.infer(inputs[i % len(inputs)][None])
            times.append(1000 * (time.perf_counter() - start))
        conn.send({"p50_ms": float(np.median(times))})
    except Exception as exc:
        conn.send({"error": f"{type(exc).__name__}: {exc}"})


def _value(result: dict, key: str):
    if "error" in result:
        raise EdgecxrError(f"a benchmark child failed: {result['error']}", fix="run it alone to see the traceback")
    return result[key]


def benchmark_app_fps(ir: Path, shape, seconds: float, threads: int | None) -> tuple[float, dict]:
    """OpenVINO's own tool on the same IR, batch 1, THROUGHPUT hint, threads like the runner,
    f32 input (its default, u8, is not what the runner gets) and f32 inference precision (its
    default on an AMX CPU is bf16); returns FPS and the settings it reported."""
    import json
    import tempfile

    tool = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    config: dict[str, str | int] = {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32"}
    if threads:  # benchmark_app refuses -nthreads beside -hint; a config file carries both
        config["INFERENCE_NUM_THREADS"] = int(threads)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"CPU": config}, f)
    cmd = [tool, "-m", str(ir), "-d", "CPU", "-hint", "throughput", "-t", str(max(1, round(seconds))),
           "-shape", "[" + ",".join(str(d) for d in shape) + "]", "-ip", "f32", "-load_config", f.name]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 300)
    finally:
        Path(f.name).unlink()
    found = re.search(r"Throughput:\s+([\d.]+)\s+FPS", out.stdout)
    if out.returncode != 0 or not found:
        raise EdgecxrError(f"benchmark_app failed (exit {out.returncode}): {out.stdout[-400:]}{out.stderr[-400:]}",
                           fix="check that the openvino wheel installed benchmark_app")
    settings = dict(re.findall(r"\[ INFO \]\s+(NUM_STREAMS|OPTIMAL_NUMBER_OF_INFER_REQUESTS|INFERENCE_NUM_THREADS"
                               r"|INFERENCE_PRECISION_HINT): (.+)", out.stdout))
    model_inputs = re.findall(r"Model inputs:\s*\n.*?: (\S+) / \S+ / (\S+)", out.stdout)
    if model_inputs:  # the last listing: after -shape and -ip were applied
        settings["input"] = " ".join(model_inputs[-1])
    return float(found.group(1)), settings


def burst_vs_benchmark_app(ir: Path, inputs_path: Path, shape, *, rounds: int, seconds: float, batch: int,
                           threads: int | None) -> dict:
    app, async_, sync = [], [], []
    settings: dict = {}
    for _ in range(rounds):
        fps, settings["benchmark_app"] = benchmark_app_fps(ir, shape, seconds, threads)
        app.append(fps)
        row = in_child(_burst_child, str(ir), str(inputs_path), batch, seconds, threads, True)
        async_.append(_value(row, "images_per_s"))
        settings["runner"] = row["settings"]
        sync.append(_value(in_child(_burst_child, str(ir), str(inputs_path), batch, seconds, threads, False),
                           "images_per_s"))
    med = {k: float(np.median(v)) for k, v in (("benchmark_app", app), ("async", async_), ("sync", sync))}
    return {"rounds": {"benchmark_app_fps": app, "async_images_per_s": async_, "sync_images_per_s": sync},
            "settings": settings, "median": med, "ratio": med["async"] / med["benchmark_app"],
            "ratio_per_round_median": float(np.median(np.array(async_) / np.array(app))),
            "sync_ratio": med["sync"] / med["benchmark_app"]}


def static_vs_dynamic(ir: Path, inputs_path: Path, *, rounds: int, seconds: float, threads: int | None) -> dict:
    static: list[dict] = []
    dynamic: list[dict] = []
    for _ in range(rounds):
        for rows, is_static in ((static, True), (dynamic, False)):
            row = in_child(_graph_child, str(ir), str(inputs_path), seconds, threads, is_static)
            _value(row, "cpu_ms_per_image")
            rows.append(row)
    cpu = {name: float(np.median([r["cpu_ms_per_image"] for r in rows])) for name, rows in
           (("static", static), ("dynamic", dynamic))}
    return {"cpu_ms_per_image": cpu, "ratio": cpu["static"] / cpu["dynamic"],
            "rounds": {"static": static, "dynamic": dynamic}}


def latency_vs_pytorch(ir: Path, inputs_path: Path, checkpoint: Path | None, *, rounds: int, runs: int,
                       threads: int | None) -> dict:
    from edgecxr.bench.measure import measure_pytorch

    ours: list[float] = []
    torch_: list[float] = []
    for _ in range(rounds):
        ours.append(_value(in_child(_latency_child, str(ir), str(inputs_path), runs, threads), "p50_ms"))
        if checkpoint is not None:
            row = measure_pytorch(checkpoint, inputs_path, [1], runs, 3, threads)
            torch_.append(_value(row, "latency_ms")["p50"])
    ov_p50 = float(np.median(ours))
    result: dict = {"openvino_p50_ms": ov_p50, "rounds_openvino": ours, "rounds_pytorch": torch_}
    if torch_:
        result["pytorch_p50_ms"] = float(np.median(torch_))
        result["ratio"] = ov_p50 / result["pytorch_p50_ms"]
    return result


def restart_compile(ir: Path, inputs_path: Path, cache: Path, *, rounds: int, threads: int | None) -> dict:
    """Open + first inference without a cache, with a cold cache (writes it) and with a warm one."""
    shutil.rmtree(cache, ignore_errors=True)
    cold = _value(in_child(_open_child, str(ir), str(inputs_path), threads, str(cache)), "open_s")
    plain, warm = [], []
    for _ in range(rounds):
        plain.append(_value(in_child(_open_child, str(ir), str(inputs_path), threads, None), "open_s"))
        warm.append(_value(in_child(_open_child, str(ir), str(inputs_path), threads, str(cache)), "open_s"))
    med_plain, med_warm = float(np.median(plain)), float(np.median(warm))
    return {"no_cache_s": med_plain, "cold_cache_s": cold, "warm_cache_s": med_warm, "ratio": med_warm / med_plain,
            "rounds_no_cache": plain, "rounds_warm": warm}
