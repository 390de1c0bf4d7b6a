"""The runner interface every engine implements: load, describe input, infer, close."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgecxr.core.errors import EdgecxrError
from edgecxr.core.metrics import softmax


@dataclass
class RunnerOptions:
    """Knobs a small box needs; each backend uses the ones that mean something to it."""

    threads: int | None = None  # None: the backend's default (all cores)
    device: str = "CPU"  # OpenVINO device: CPU, GPU, NPU, AUTO
    performance_hint: str = "LATENCY"  # OpenVINO: LATENCY or THROUGHPUT
    streams: int | None = None
    # OpenVINO: run a batch of several images as parallel infer requests on a model compiled
    # with the THROUGHPUT hint (streams), while single images keep the LATENCY-compiled model.
    async_bursts: bool = True
    cache_dir: str | None = None  # OpenVINO's model cache (CACHE_DIR): a restart skips most compiling
    # OpenVINO runs FP32 graphs in bf16 on CPUs with native bf16 unless told otherwise;
    # parity with the PyTorch report comes first, so f32 is the default.
    inference_precision: str = "f32"


LOGITS = "logits"
FEATURES = "features"  # pooled features per stage, for the gate's learned score (bundles since the gate)


def named_outputs(names: list[str], arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    """A graph's outputs by name; the first is the logits whatever an older export called it."""
    outputs = dict(zip(names, arrays))
    if LOGITS not in outputs:
        outputs[LOGITS] = arrays[0]
    return outputs


class Pending:
    """A batch's outputs that may still be computing (an engine's asynchronous requests), and
    when they were finished (perf_counter), which can be well before a busy caller collects them."""

    def __init__(self, collect: Callable[[], dict[str, np.ndarray]]):
        self._collect: Callable[[], dict[str, np.ndarray]] | None = collect
        self._outputs: dict[str, np.ndarray] = {}
        self.finished: float | None = None  # an engine that knows sets it while collecting

    @classmethod
    def done(cls, outputs: dict[str, np.ndarray]) -> Pending:
        pending = cls(lambda: outputs)
        pending.finished = time.perf_counter()
        return pending

    def outputs(self) -> dict[str, np.ndarray]:
        """Wait for every output (once; later calls give the same arrays)."""
        if self._collect is not None:
            self._outputs, self._collect = self._collect(), None
            if self.finished is None:
                self.finished = time.perf_counter()
        return self._outputs

    def result(self) -> np.ndarray:
        """Wait for the logits."""
        return self.outputs()[LOGITS]


class Runner:
    """One loaded engine. Input: float32 NCHW, already preprocessed; outputs: the logits, and
    for bundles exported with the gate, the pooled features its learned score reads.

    `infer` checks the batch against what the engine declares (as Polygraphy's base runner
    checks its feed dict) and splits it into chunks the engine accepts, so a caller's batch
    size never has to know an engine's profile; backends implement `_run` for one chunk,
    returning every output of the graph by name (`named_outputs`).
    """

    backend: str = "?"
    input_name: str = "pixel_values"
    input_shape: tuple = ()  # with None (or -1) for the dynamic batch axis
    max_batch: int | None = None  # the largest batch one call may take (a TensorRT profile); None: any

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """The logits of a batch."""
        return self.infer_outputs(batch)[LOGITS]

    def infer_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of a batch by name (LOGITS always; FEATURES where the graph has them)."""
        batch = self.check_input(batch)
        step = self.max_batch or len(batch)
        if len(batch) <= step:
            return self._run(batch)
        parts = [self._run(batch[i:i + step]) for i in range(0, len(batch), step)]
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def submit(self, batch: np.ndarray) -> Pending:
        """Start a batch and return its pending outputs. An engine that runs batches in the
        background (OpenVINO's asynchronous requests) returns at once, so a caller can queue
        the next batch before collecting this one and the engine never waits between them;
        the others compute the batch here."""
        return Pending.done(self.infer_outputs(batch))

    def check_input(self, batch: np.ndarray) -> np.ndarray:
        """The batch as contiguous float32, or an error naming the shape the engine expects."""
        batch = np.asarray(batch)
        expected = tuple(None if d is None or d < 0 else d for d in self.input_shape)
        wrong = batch.ndim != len(expected) or any(e is not None and e != d for e, d in zip(expected, batch.shape))
        if (expected and wrong) or batch.ndim == 0 or len(batch) == 0:
            shown = tuple("N" if d is None else d for d in expected)
            raise EdgecxrError(f"the {self.backend} engine takes {self.input_name} of shape {shown}, "
                               f"got {batch.shape}", fix="give a non-empty batch preprocessed with the "
                               "bundle's own spec (edgecxr.core.preprocess)")
        if not np.issubdtype(batch.dtype, np.floating):
            raise EdgecxrError(f"the {self.backend} engine takes float32 input, got {batch.dtype}",
                               fix="preprocess the images with the bundle's spec first")
        return np.ascontiguousarray(batch, dtype=np.float32)

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """One checked chunk of at most `max_batch` images: every output by name."""
        raise NotImplementedError

    def probabilities(self, inputs: np.ndarray, batch_size: int = 16,
                      advance: Callable[[int], object] | None = None) -> np.ndarray:
        """Class probabilities for any number of inputs, `batch_size` at a time: the one
        infer-plus-softmax loop the runtime, parity-check and the export checks share."""
        chunks = []
        for start in range(0, len(inputs), batch_size):
            chunks.append(softmax(self.infer(inputs[start:start + batch_size])))
            if advance is not None:
                advance(len(chunks[-1]))
        return np.concatenate(chunks) if chunks else np.zeros((0, 0))

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
