"""OpenVINO runner: an IR (`.xml` + `.bin`) or an ONNX file, compiled for one device.

Single images (a scanner's usual pace) run on a model compiled with the LATENCY hint: one
stream using every core. A burst — a batch of several images — runs as parallel
asynchronous infer requests on a second compilation with the THROUGHPUT hint (one stream
per few cores), the way OpenVINO's benchmark_app reaches its throughput; that compilation
is made at the first burst. With `cache_dir`, compiled blobs are kept (OpenVINO's
CACHE_DIR) so a restarted service compiles in a fraction of the time.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgecxr.backends.base import Runner, RunnerOptions
from edgecxr.errors import EdgecxrError
from edgecxr.optional import require


def compile_config(options: RunnerOptions, device: str, hint: str) -> dict:
    config: dict[str, str | int] = {"PERFORMANCE_HINT": hint}
    if options.threads and device in ("CPU", "AUTO"):
        config["INFERENCE_NUM_THREADS"] = int(options.threads)
    if device in ("CPU", "AUTO") and options.inference_precision:
        config["INFERENCE_PRECISION_HINT"] = options.inference_precision
    if options.streams:
        config["NUM_STREAMS"] = str(options.streams)
    return config


class OpenVinoRunner(Runner):
    backend = "openvino"

    def __init__(self, path: str | Path, options: RunnerOptions):
        ov = self.ov = require("openvino", "the OpenVINO backend")
        core = self.core = ov.Core()
        device = options.device.upper()
        if device != "AUTO" and not any(d.startswith(device) for d in core.available_devices):
            raise EdgecxrError(f"OpenVINO device {device} is not available here "
                               f"(found: {', '.join(core.available_devices)})",
                               fix="use --device CPU or AUTO")
        if options.cache_dir:
            _use_cache(core, Path(options.cache_dir))
        self.options, self.device, self.path = options, device, path
        self.model = core.read_model(str(path))
        self.hint = options.performance_hint.upper()
        self.compiled = core.compile_model(self.model, device, compile_config(options, device, self.hint))
        self.request = self.compiled.create_infer_request()
        inp = self.compiled.input(0)
        self.input_name = inp.get_any_name()
        shape = inp.get_partial_shape()
        self.input_shape = tuple(None if d.is_dynamic else d.get_length() for d in shape)
        self._queue = None
        self._results: list = []

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) > 1 and self.options.async_bursts:
            return self._burst(batch)
        result = self.request.infer({0: batch})
        return np.asarray(result[self.compiled.output(0)]).copy()

    def _burst_queue(self):
        if self._queue is None:
            compiled = self.compiled
            if self.hint != "THROUGHPUT":
                config = compile_config(self.options, self.device, "THROUGHPUT")
                compiled = self.core.compile_model(self.model, self.device, config)
            jobs = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            self._queue = self.ov.AsyncInferQueue(compiled, max(1, jobs))
            self._queue.set_callback(self._done)
        return self._queue

    def _done(self, request, index: int) -> None:
        self._results[index] = request.get_output_tensor(0).data.copy()

    def _burst(self, batch: np.ndarray) -> np.ndarray:
        """One image per infer request, as many in flight as the streams can take."""
        queue = self._burst_queue()
        self._results = [None] * len(batch)
        for i in range(len(batch)):
            queue.start_async({0: batch[i:i + 1]}, i)
        queue.wait_all()
        if any(r is None for r in self._results):
            raise EdgecxrError("OpenVINO returned no result for part of a batch", path=self.path,
                               fix="run with --performance-hint LATENCY and report the OpenVINO version")
        return np.concatenate(self._results)

    def close(self) -> None:
        self._queue = None
        self.request = None
        self.compiled = None


def _use_cache(core, folder: Path) -> None:
    """Keep compiled blobs in FOLDER; a folder that cannot be written only costs compile time."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    if not os.access(folder, os.W_OK | os.X_OK):
        return
    core.set_property({"CACHE_DIR": str(folder)})


def open_runner(path, options: RunnerOptions) -> Runner:
    return OpenVinoRunner(path, options)
