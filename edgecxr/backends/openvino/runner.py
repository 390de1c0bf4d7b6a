"""OpenVINO runner: an IR (`.xml` + `.bin`) or an ONNX file, compiled for one device.

Single images (a scanner's usual pace) run on a model compiled with the LATENCY hint: one
stream using every core. A burst — a batch of several images — runs as one asynchronous
infer request per image on a second compilation with the THROUGHPUT hint (one stream per
few cores), the way OpenVINO's benchmark_app reaches its throughput; that compilation is
made at the first burst. `submit` starts a burst and returns at once, so the watcher queues
the next micro-batch behind it and the streams never drain between batches.

Since every request then carries one image, both compilations take the model reshaped to a
static batch of 1, as benchmark_app's `-shape [1,...]` does: the dynamic-batch graph costs
measurably more CPU per image (docs/bench.md). With `async_bursts=False` the dynamic graph
is kept, and one synchronous request takes the whole batch. With `cache_dir`, compiled
blobs are kept (OpenVINO's CACHE_DIR) so a restarted service compiles in a fraction of the time.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from edgecxr.backends.base import Pending, Runner, RunnerOptions, named_outputs
from edgecxr.core.errors import EdgecxrError
from edgecxr.core.optional import require


def compile_config(options: RunnerOptions, device: str, hint: str) -> dict:
    config: dict[str, str | int] = {"PERFORMANCE_HINT": hint}
    if options.threads and device in ("CPU", "AUTO"):
        config["INFERENCE_NUM_THREADS"] = int(options.threads)
    if device in ("CPU", "AUTO") and options.inference_precision:
        config["INFERENCE_PRECISION_HINT"] = options.inference_precision
    if options.streams:
        config["NUM_STREAMS"] = str(options.streams)
    return config


def batch_of_one(model):
    """A copy of MODEL with its dynamic batch axis fixed to 1, or MODEL itself when its input
    is not [dynamic batch, static dims...] (nothing to fix, or a shape we should not guess)."""
    shape = model.input(0).get_partial_shape()
    if len(model.inputs) != 1 or shape.rank.is_dynamic or not shape[0].is_dynamic \
            or any(d.is_dynamic for d in list(shape)[1:]):
        return model
    one = model.clone()
    one.reshape([1, *(d.get_length() for d in list(shape)[1:])])
    return one


class OpenVinoRunner(Runner):
    backend = "openvino"

    def __init__(self, path: str | Path, options: RunnerOptions):
        ov = require("openvino", "the OpenVINO backend")
        core = self.core = ov.Core()
        device = options.device.upper()
        if device != "AUTO" and not any(d.startswith(device) for d in core.available_devices):
            raise EdgecxrError(f"OpenVINO device {device} is not available here "
                               f"(found: {', '.join(core.available_devices)})",
                               fix="use --openvino-device CPU or AUTO")
        if options.cache_dir:
            _use_cache(core, Path(options.cache_dir))
        self.options, self.device, self.path = options, device, path
        model = core.read_model(str(path))
        inp = model.input(0)
        self.input_name = inp.get_any_name()
        self.input_shape = tuple(None if d.is_dynamic else d.get_length() for d in inp.get_partial_shape())
        # with bursts, every request carries one image: both compilations take the batch-1 graph
        self.model = batch_of_one(model) if options.async_bursts else model
        self.hint = options.performance_hint.upper()
        self.compiled = self._compile(self.hint)
        self.output_names = [output.get_any_name() for output in self.compiled.outputs]
        self.request = self.compiled.create_infer_request()
        self._streams = self.compiled if self.hint == "THROUGHPUT" else None
        self._idle: list = []  # finished burst requests, reused
        self._done_at: dict[int, float] = {}  # when each request in flight finished (its callback)

    def _compile(self, hint: str):
        return self.core.compile_model(self.model, self.device, compile_config(self.options, self.device, hint))

    def _bursts(self, batch: np.ndarray) -> bool:
        return self.options.async_bursts and len(batch) > 1

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self._bursts(batch):
            return self._start(batch).outputs()
        self.request.infer({0: batch})
        return self._outputs_of([self.request])

    def _outputs_of(self, requests: list) -> dict[str, np.ndarray]:
        """Each output of the requests, in order, concatenated along the batch axis."""
        count = len(self.compiled.outputs)
        arrays = [np.concatenate([r.get_output_tensor(i).data.copy() for r in requests]) for i in range(count)]
        return named_outputs(self.output_names, arrays)

    def submit(self, batch: np.ndarray) -> Pending:
        batch = self.check_input(batch)
        return self._start(batch) if self._bursts(batch) else Pending.done(self._run(batch))

    def _start(self, batch: np.ndarray) -> Pending:
        """One request per image, all started now; the streams take them in order."""
        if self._streams is None:
            self._streams = self._compile("THROUGHPUT")
        requests = [self._idle.pop() if self._idle else self._new_request() for _ in batch]
        for request, image in zip(requests, batch):
            self._done_at.pop(id(request), None)
            request.start_async({0: image[None]})
        pending = Pending(lambda: self._collect(requests, pending))
        return pending

    def _new_request(self):
        request = self._streams.create_infer_request()
        request.set_callback(self._finished, id(request))
        return request

    def _finished(self, key: int) -> None:
        self._done_at[key] = time.perf_counter()

    def _collect(self, requests: list, pending: Pending) -> dict[str, np.ndarray]:
        """Every request is waited for, even after one failed, before any is reused."""
        errors = []
        for request in requests:
            try:
                request.wait()
            except Exception as exc:  # re-raised below, once no request is still running
                errors.append(exc)
        pending.finished = max(self._done_at.pop(id(r), time.perf_counter()) for r in requests)
        try:
            if errors:
                raise errors[0]
            return self._outputs_of(requests)
        finally:
            self._idle.extend(requests)

    def close(self) -> None:
        self._idle = []
        self._streams = None
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
