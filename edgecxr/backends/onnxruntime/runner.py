"""ONNX Runtime runner: any ONNX graph, FP32 or QDQ INT8, on the CPU execution provider."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecxr.backends.base import Runner, RunnerOptions, named_outputs
from edgecxr.core.optional import require


class OnnxRuntimeRunner(Runner):
    backend = "onnxruntime"

    def __init__(self, path: str | Path, options: RunnerOptions):
        ort = require("onnxruntime", "the ONNX Runtime backend")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if options.threads:
            so.intra_op_num_threads = options.threads
            so.inter_op_num_threads = 1
        so.log_severity_level = 3
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in ort.get_available_providers()]
        if options.device.upper() == "CPU":
            providers = ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), so, providers=providers)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = tuple(d if isinstance(d, int) else None for d in inp.shape)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.providers = self.session.get_providers()

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return named_outputs(self.output_names, self.session.run(self.output_names, {self.input_name: batch}))

    def close(self) -> None:
        self.session = None


def open_runner(path, options: RunnerOptions) -> Runner:
    return OnnxRuntimeRunner(path, options)
