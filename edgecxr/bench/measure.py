"""Measuring one engine, each in its own process so that peak RSS and load time are its own.

Inputs are real preprocessed images (a .npy file the parent wrote), never zeros: INT8
kernels and data-dependent paths behave differently on constant inputs.
"""

from __future__ import annotations

import multiprocessing
import resource
import time
from pathlib import Path

import numpy as np

from edgecxr.core.timing import median_ms  # noqa: F401  (re-exported for the deploy/ benchmarks)


def _percentiles(times_ms: list[float]) -> dict:
    a = np.asarray(times_ms)
    return {"mean": float(a.mean()), "p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99))}


def _timed_loop(infer, inputs: np.ndarray, batch_sizes: list[int], iterations: int, warmup: int) -> dict:
    n = len(inputs)
    for i in range(warmup):
        infer(inputs[i % n:i % n + 1])
    latencies = []
    for i in range(iterations):
        x = inputs[i % n:i % n + 1]
        start = time.perf_counter()
        infer(x)
        latencies.append(1000 * (time.perf_counter() - start))
    throughput = {}
    for b in batch_sizes:
        batch = np.stack([inputs[i % n] for i in range(b)])
        infer(batch)
        rounds = max(3, iterations // b)
        start = time.perf_counter()
        for _ in range(rounds):
            infer(batch)
        throughput[str(b)] = rounds * b / (time.perf_counter() - start)
    return {"latency_ms": _percentiles(latencies), "throughput_ips": throughput}


def _engine_child(conn, backend: str, path: str, inputs_path: str, batch_sizes, iterations, warmup, threads):
    try:
        from edgecxr.backends import RunnerOptions, open_runner

        inputs = np.load(inputs_path)
        start = time.perf_counter()
        runner = open_runner(backend, Path(path), RunnerOptions(threads=threads))
        load_s = time.perf_counter() - start
        start = time.perf_counter()
        runner.infer(inputs[:1])
        first_ms = 1000 * (time.perf_counter() - start)
        result = _timed_loop(runner.infer, inputs, batch_sizes, iterations, warmup)
        runner.close()
        result.update(load_s=load_s, first_inference_ms=first_ms,
                      peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        conn.send(result)
    except Exception as exc:  # reported as the row's error, the other rows still run
        conn.send({"error": f"{type(exc).__name__}: {exc}"})


def _pytorch_child(conn, checkpoint: str, inputs_path: str, batch_sizes, iterations, warmup, threads):
    try:
        import torch

        from edgecxr.training.model import load_checkpoint

        if threads:
            torch.set_num_threads(threads)
        inputs = np.load(inputs_path)
        start = time.perf_counter()
        model, _, _ = load_checkpoint(checkpoint)
        load_s = time.perf_counter() - start

        def infer(x):
            with torch.inference_mode():
                return model(pixel_values=torch.from_numpy(x)).logits.numpy()

        start = time.perf_counter()
        infer(inputs[:1])
        first_ms = 1000 * (time.perf_counter() - start)
        result = _timed_loop(infer, inputs, batch_sizes, iterations, warmup)
        result.update(load_s=load_s, first_inference_ms=first_ms, threads=torch.get_num_threads(),
                      peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        conn.send(result)
    except Exception as exc:
        conn.send({"error": f"{type(exc).__name__}: {exc}"})


def in_child(target, *args, timeout: float = 900.0) -> dict:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(child, *args), daemon=True)
    proc.start()
    child.close()
    if not parent.poll(timeout):
        proc.kill()
        return {"error": f"timed out after {timeout:.0f} s"}
    result = parent.recv()
    proc.join(10)
    return result


def measure_engine(backend, path, inputs_path, batch_sizes, iterations, warmup, threads) -> dict:
    return in_child(_engine_child, backend, str(path), str(inputs_path), batch_sizes, iterations, warmup, threads)


def measure_pytorch(checkpoint, inputs_path, batch_sizes, iterations, warmup, threads) -> dict:
    return in_child(_pytorch_child, str(checkpoint), str(inputs_path), batch_sizes, iterations, warmup, threads)
