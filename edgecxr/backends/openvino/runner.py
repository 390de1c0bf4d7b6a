"""OpenVINO runner: an IR (`.xml` + `.bin`) or an ONNX file, compiled for one device.

Defaults suit a small box: the LATENCY hint, all cores unless `threads` is set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecxr.backends.base import Runner, RunnerOptions
from edgecxr.errors import EdgecxrError
from edgecxr.optional import require


class OpenVinoRunner(Runner):
    backend = "openvino"

    def __init__(self, path: str | Path, options: RunnerOptions):
        ov = require("openvino", "the OpenVINO backend")
        core = ov.Core()
        device = options.device.upper()
        if device != "AUTO" and not any(d.startswith(device) for d in core.available_devices):
            raise EdgecxrError(f"OpenVINO device {device} is not available here "
                               f"(found: {', '.join(core.available_devices)})",
                               fix="use --device CPU or AUTO")
        config: dict[str, str | int] = {"PERFORMANCE_HINT": options.performance_hint.upper()}
        if options.threads and device in ("CPU", "AUTO"):
            config["INFERENCE_NUM_THREADS"] = int(options.threads)
        if device in ("CPU", "AUTO") and options.inference_precision:
            config["INFERENCE_PRECISION_HINT"] = options.inference_precision
        if options.streams:
            config["NUM_STREAMS"] = str(options.streams)
        model = core.read_model(str(path))
        self.compiled = core.compile_model(model, device, config)
        self.request = self.compiled.create_infer_request()
        inp = self.compiled.input(0)
        self.input_name = inp.get_any_name()
        shape = inp.get_partial_shape()
        self.input_shape = tuple(None if d.is_dynamic else d.get_length() for d in shape)
        self.device = device

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        result = self.request.infer({0: batch})
        return np.asarray(result[self.compiled.output(0)]).copy()

    def close(self) -> None:
        self.request = None
        self.compiled = None


def open_runner(path, options: RunnerOptions) -> Runner:
    return OpenVinoRunner(path, options)
