"""TensorRT runner: a serialized engine, device buffers through cuda-python (no torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecxr.backends.base import Runner, RunnerOptions
from edgecxr.backends.tensorrt.compat import require_tensorrt
from edgecxr.errors import EdgecxrError, MissingDependencyError


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


class TensorRtRunner(Runner):
    backend = "tensorrt"

    def __init__(self, path: str | Path, options: RunnerOptions):
        trt = require_tensorrt()
        self.cudart = _cudart()
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise EdgecxrError("TensorRT cannot load this engine (built for another GPU or "
                               "TensorRT version?)", path=path,
                               fix="rebuild it here with `edgecxr build-engine BUNDLE`")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.input_name = self.inputs[0]
        self.input_shape = tuple(None if d < 0 else d for d in self.engine.get_tensor_shape(self.input_name))
        self.stream = _check(self.cudart.cudaStreamCreate())
        self._buffers: dict[str, tuple[int, int]] = {}

    def _device(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _check(self.cudart.cudaFree(ptr))
            ptr = _check(self.cudart.cudaMalloc(nbytes))
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def infer(self, batch: np.ndarray) -> np.ndarray:
        cudart = self.cudart
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        self.context.set_input_shape(self.input_name, batch.shape)
        src = self._device(self.input_name, batch.nbytes)
        _check(cudart.cudaMemcpyAsync(src, batch.ctypes.data, batch.nbytes,
                                      cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))
        self.context.set_tensor_address(self.input_name, src)
        out_name = self.outputs[0]
        out = np.empty(tuple(self.context.get_tensor_shape(out_name)), dtype=np.float32)
        dst = self._device(out_name, out.nbytes)
        self.context.set_tensor_address(out_name, dst)
        if not self.context.execute_async_v3(self.stream):
            raise EdgecxrError("TensorRT inference failed", fix="see the TensorRT log")
        _check(cudart.cudaMemcpyAsync(out.ctypes.data, dst, out.nbytes,
                                      cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))
        _check(cudart.cudaStreamSynchronize(self.stream))
        return out

    def close(self) -> None:
        for ptr, _ in self._buffers.values():
            self.cudart.cudaFree(ptr)
        self._buffers.clear()
        self.context = None
        self.engine = None


def open_runner(path, options: RunnerOptions) -> Runner:
    return TensorRtRunner(path, options)
