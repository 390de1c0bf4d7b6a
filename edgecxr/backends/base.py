"""The runner interface every engine implements: load, describe input, infer, close."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RunnerOptions:
    """Knobs a small box needs; each backend uses the ones that mean something to it."""

    threads: int | None = None  # None: the backend's default (all cores)
    device: str = "CPU"  # OpenVINO device: CPU, GPU, NPU, AUTO
    performance_hint: str = "LATENCY"  # OpenVINO: LATENCY or THROUGHPUT
    streams: int | None = None
    # OpenVINO runs FP32 graphs in bf16 on CPUs with native bf16 unless told otherwise;
    # parity with the PyTorch report comes first, so f32 is the default.
    inference_precision: str = "f32"


class Runner:
    """One loaded engine. Input: float32 NCHW, already preprocessed; output: logits."""

    backend: str = "?"
    input_name: str = "pixel_values"
    input_shape: tuple = ()  # with None (or -1) for the dynamic batch axis

    def infer(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
