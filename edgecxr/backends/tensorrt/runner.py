"""TensorRT runner: a serialized engine, device buffers through cuda-python (no torch).

The engine declares one optimisation profile (batch 1 to 8 from `edgecxr build-engine`);
the runner reads its limits, lets the base class split larger batches to its maximum, pads
a batch under its minimum, and treats every False from TensorRT as an error with its cause.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecxr.backends.base import Runner, RunnerOptions, named_outputs
from edgecxr.backends.tensorrt.compat import require_tensorrt
from edgecxr.core.errors import EdgecxrError, MissingDependencyError

REBUILD = "rebuild it here with `edgecxr build-engine BUNDLE`"


def _cudart():
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError as exc:
            raise MissingDependencyError("the TensorRT runner needs cuda-python for GPU buffers",
                                         fix="pip install cuda-python") from exc
    return cudart


def _check(result):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise EdgecxrError(f"CUDA call failed with error {err}", fix="check the GPU and its driver")
    return rest[0] if len(rest) == 1 else rest


def engine_io(engine, trt, path) -> tuple[str, list[str]]:
    """(the one input, the outputs in engine order); the input and first output must be float32."""
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
    if len(inputs) != 1 or not outputs:
        raise EdgecxrError(f"the engine has inputs {inputs} and outputs {outputs}; an image classifier "
                           "has one input and at least one output", path=path, fix=REBUILD)
    for name in (inputs[0], outputs[0]):
        if engine.get_tensor_dtype(name) != trt.DataType.FLOAT:
            raise EdgecxrError(f"engine tensor {name!r} is {engine.get_tensor_dtype(name)}, not float32",
                               path=path, fix=REBUILD)
    return inputs[0], outputs


class TensorRtRunner(Runner):
    backend = "tensorrt"

    def __init__(self, path: str | Path, options: RunnerOptions):
        trt = self.trt = require_tensorrt()
        self.cudart = _cudart()
        self.path = path
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise EdgecxrError("TensorRT cannot load this engine (built for another GPU or "
                               "TensorRT version?)", path=path, fix=REBUILD)
        self.input_name, self.outputs = engine_io(self.engine, trt, path)
        self.input_shape = tuple(None if d < 0 else d for d in self.engine.get_tensor_shape(self.input_name))
        low, _, high = (tuple(s) for s in self.engine.get_tensor_profile_shape(self.input_name, 0))
        self.profile = (low, high)
        self.min_batch, self.max_batch = low[0], high[0]
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise EdgecxrError("TensorRT could not create an execution context (out of GPU memory?)",
                               path=path, fix="free GPU memory or use a smaller engine")
        self.stream = _check(self.cudart.cudaStreamCreate())
        self._buffers: dict[str, tuple[int, int]] = {}

    def check_input(self, batch: np.ndarray) -> np.ndarray:
        batch = super().check_input(batch)
        low, high = self.profile
        for axis, (size, lo, hi) in enumerate(zip(batch.shape[1:], low[1:], high[1:]), start=1):
            if not lo <= size <= hi:
                raise EdgecxrError(f"input axis {axis} is {size}; the engine's profile allows {lo} to {hi} "
                                   f"(shapes {low} to {high})", path=self.path,
                                   fix="preprocess with the bundle's spec, or rebuild the engine for this size")
        return batch

    def _device(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _check(self.cudart.cudaFree(ptr))
            ptr = _check(self.cudart.cudaMalloc(nbytes))
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def _address(self, name: str, ptr: int) -> None:
        if not self.context.set_tensor_address(name, ptr):
            raise EdgecxrError(f"TensorRT refused the buffer for tensor {name!r}", path=self.path, fix=REBUILD)

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        n = len(batch)
        if n < self.min_batch:  # the profile starts above this batch: pad, then drop the padding
            batch = np.concatenate([batch, np.zeros((self.min_batch - n, *batch.shape[1:]), np.float32)])
        cudart, context = self.cudart, self.context
        if not context.set_input_shape(self.input_name, batch.shape):
            raise EdgecxrError(f"TensorRT refused input shape {batch.shape} (profile {self.profile[0]} to "
                               f"{self.profile[1]})", path=self.path, fix=REBUILD)
        src = self._device(self.input_name, batch.nbytes)
        _check(cudart.cudaMemcpyAsync(src, batch.ctypes.data, batch.nbytes,
                                      cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))
        self._address(self.input_name, src)
        results = []
        for name in self.outputs:
            shape = tuple(context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise EdgecxrError(f"TensorRT left output {name!r} unresolved ({shape})", path=self.path, fix=REBUILD)
            host = np.empty(shape, dtype=self.trt.nptype(self.engine.get_tensor_dtype(name)))
            self._address(name, self._device(name, host.nbytes))
            results.append(host)
        if not context.execute_async_v3(self.stream):
            raise EdgecxrError("TensorRT inference failed", path=self.path, fix="see the TensorRT log")
        for name, out in zip(self.outputs, results):  # the logits and, in a gate bundle, the features
            _check(cudart.cudaMemcpyAsync(out.ctypes.data, self._buffers[name][0], out.nbytes,
                                          cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))
        _check(cudart.cudaStreamSynchronize(self.stream))
        return named_outputs(self.outputs, [out[:n] for out in results])

    def close(self) -> None:
        for ptr, _ in self._buffers.values():
            self.cudart.cudaFree(ptr)
        self._buffers.clear()
        if getattr(self, "stream", None) is not None:
            self.cudart.cudaStreamDestroy(self.stream)
            self.stream = None
        self.context = None
        self.engine = None


def open_runner(path, options: RunnerOptions) -> Runner:
    return TensorRtRunner(path, options)
