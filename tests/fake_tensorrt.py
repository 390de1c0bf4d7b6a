"""A stand-in for `tensorrt` (10.x Python API) and cuda-python's runtime, for machines without a GPU.

It enforces what the TensorRT documentation promises, so the runner and builder logic meets
the same refusals as on a Jetson: `set_input_shape` returns False for a shape outside the
optimisation profile, a wrong rank or a name that is not an input; `set_tensor_address`
returns False for an unknown name; `execute_async_v3` returns False until every input shape
and every I/O address is set; `add_optimization_profile` returns -1 for min > opt > max;
`deserialize_cuda_engine` returns None for bytes it did not serialize. Device memory is real
host memory handed out by the fake `cudaMalloc`, and every copy and kernel access is bounds
checked against those allocations.

The "ONNX graph" the fake parser reads is JSON: {"inputs": {name: shape}, "classes": n}; the
"network" computes logits = x.reshape(n, -1) @ W with a fixed W (see `reference_logits`).
"""

from __future__ import annotations

import ctypes
import enum
import json
from typing import ClassVar

import numpy as np

__version__ = "10.3.0"
MAGIC = b"FAKE-TRT-ENGINE\n"


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3


def nptype(dtype: DataType):
    return {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
            DataType.INT32: np.int32}[dtype]


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0


class BuilderFlag(enum.Enum):
    FP16 = 0
    INT8 = 1


class Logger:
    ERROR, WARNING, INFO = 1, 2, 3

    def __init__(self, severity=WARNING):
        self.severity = severity


def reference_logits(x: np.ndarray, classes: int) -> np.ndarray:
    """What the fake network computes for a batch: a fixed linear map of the pixels."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    w = np.random.default_rng(7).standard_normal((flat.shape[1], classes)) / flat.shape[1]
    return (flat @ w).astype(np.float32)


# -- build side ---------------------------------------------------------------------------------

class _Tensor:
    def __init__(self, name: str, shape):
        self.name, self.shape = name, tuple(shape)


class INetworkDefinition:
    def __init__(self):
        self.inputs: list[_Tensor] = []
        self.classes = 0

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    def get_input(self, index: int) -> _Tensor:
        return self.inputs[index]


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: Logger):
        self.network, self.errors = network, []

    def parse(self, model: bytes) -> bool:
        try:
            graph = json.loads(model)
            self.network.inputs = [_Tensor(n, s) for n, s in graph["inputs"].items()]
            self.network.classes = int(graph["classes"])
        except (ValueError, KeyError, TypeError) as exc:
            self.errors.append(f"In node -1: not an ONNX model ({exc})")
            return False
        return True

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> str:
        return self.errors[index]


class IOptimizationProfile:
    def __init__(self):
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, input: str, min, opt, max) -> None:
        self.shapes[input] = (tuple(min), tuple(opt), tuple(max))

    def valid(self) -> bool:
        return all(len(lo) == len(op) == len(hi) and all(a <= b <= c for a, b, c in zip(lo, op, hi))
                   for lo, op, hi in self.shapes.values())


class IBuilderConfig:
    def __init__(self):
        self.profiles: list[IOptimizationProfile] = []
        self.flags: set[BuilderFlag] = set()
        self.pools: dict = {}

    def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
        self.pools[pool] = size

    def set_flag(self, flag: BuilderFlag) -> None:
        self.flags.add(flag)

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        if not profile.valid():
            return -1
        self.profiles.append(profile)
        return len(self.profiles) - 1


class Builder:
    def __init__(self, logger: Logger):
        self.logger = logger

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition()

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig):
        """None (as TensorRT) unless one profile covers every dynamic input within its static axes."""
        if len(config.profiles) != 1 or network.num_inputs != 1:
            return None
        tensor = network.get_input(0)
        shapes = config.profiles[0].shapes.get(tensor.name)
        if shapes is None or any(d >= 0 and not (lo == d == hi) for d, lo, hi in
                                 zip(tensor.shape, shapes[0], shapes[2])):
            return None
        return serialize(tensor.name, tensor.shape, shapes, network.classes)


def serialize(name: str, shape, profile, classes: int) -> bytes:
    body = {"input": name, "shape": list(shape), "profile": [list(s) for s in profile], "classes": classes}
    return MAGIC + json.dumps(body).encode()


# -- run side -------------------------------------------------------------------------------------

class Runtime:
    def __init__(self, logger: Logger):
        self.logger = logger

    def deserialize_cuda_engine(self, data: bytes):
        if not data.startswith(MAGIC):
            return None
        return ICudaEngine(json.loads(data[len(MAGIC):]))


class ICudaEngine:
    OUTPUT = "logits"

    def __init__(self, body: dict):
        self.body = body
        self.input = body["input"]
        self.names = [self.input, self.OUTPUT]
        self.contexts: list[IExecutionContext] = []

    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    @property
    def num_optimization_profiles(self) -> int:
        return 1

    def get_tensor_name(self, index: int) -> str:
        return self.names[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return {self.input: TensorIOMode.INPUT, self.OUTPUT: TensorIOMode.OUTPUT}.get(name, TensorIOMode.NONE)

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType.FLOAT

    def get_tensor_shape(self, name: str) -> tuple:
        return tuple(self.body["shape"]) if name == self.input else (-1, self.body["classes"])

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple]:
        if name != self.input or profile_index != 0:
            raise RuntimeError(f"no profile shapes for {name!r} in profile {profile_index}")
        return [tuple(s) for s in self.body["profile"]]

    def create_execution_context(self) -> IExecutionContext:
        context = IExecutionContext(self)
        self.contexts.append(context)
        return context


class IExecutionContext:
    def __init__(self, engine: ICudaEngine):
        self.engine = engine
        self.shape: tuple | None = None
        self.addresses: dict[str, int] = {}
        self.shapes_set: list[tuple] = []  # every shape accepted, for tests to read
        self.executed: list[int] = []  # batch size of every run

    def set_input_shape(self, name: str, shape) -> bool:
        shape = tuple(int(d) for d in shape)
        if self.engine.get_tensor_mode(name) != TensorIOMode.INPUT:
            return False
        low, _, high = self.engine.get_tensor_profile_shape(name, 0)
        if len(shape) != len(low) or any(not lo <= d <= hi for d, lo, hi in zip(shape, low, high)):
            return False
        self.shape = shape
        self.shapes_set.append(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple:
        if name == self.engine.input:
            return self.shape or self.engine.get_tensor_shape(name)
        return (self.shape[0] if self.shape else -1, self.engine.body["classes"])

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        if name not in self.engine.names:
            return False
        self.addresses[name] = int(ptr)
        return True

    @property
    def all_input_dimensions_specified(self) -> bool:
        return self.shape is not None

    def execute_async_v3(self, stream_handle: int) -> bool:
        if self.shape is None or set(self.addresses) != set(self.engine.names):
            return False
        out_shape = self.get_tensor_shape(ICudaEngine.OUTPUT)
        x = np.frombuffer(device_bytes(self.addresses[self.engine.input], 4 * int(np.prod(self.shape))),
                          dtype=np.float32).reshape(self.shape)
        logits = reference_logits(x, self.engine.body["classes"])
        out = device_bytes(self.addresses[ICudaEngine.OUTPUT], 4 * int(np.prod(out_shape)))
        ctypes.memmove(ctypes.addressof(out), logits.ctypes.data, logits.nbytes)
        self.executed.append(self.shape[0])
        return True


# -- cuda-python's runtime (cudart) ------------------------------------------------------------------

_ALLOCATIONS: dict[int, ctypes.Array] = {}


def device_bytes(ptr: int, nbytes: int):
    """The device range [ptr, ptr + nbytes) as a ctypes array; an error outside every allocation."""
    for base, buf in _ALLOCATIONS.items():
        if base <= ptr and ptr + nbytes <= base + len(buf):
            return (ctypes.c_char * nbytes).from_address(ptr)
    raise RuntimeError(f"illegal device access: {nbytes} bytes at {ptr:#x} outside every cudaMalloc")


class cudart:
    class cudaError_t(enum.IntEnum):
        cudaSuccess = 0
        cudaErrorInvalidValue = 1

    class cudaMemcpyKind(enum.IntEnum):
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    streams: ClassVar[set[int]] = set()

    @classmethod
    def cudaStreamCreate(cls):
        handle = 0x5000 + len(cls.streams) + 1
        cls.streams.add(handle)
        return cls.cudaError_t.cudaSuccess, handle

    @classmethod
    def cudaStreamDestroy(cls, stream):
        cls.streams.discard(stream)
        return (cls.cudaError_t.cudaSuccess,)

    @classmethod
    def cudaStreamSynchronize(cls, stream):
        ok = stream in cls.streams
        return (cls.cudaError_t.cudaSuccess if ok else cls.cudaError_t.cudaErrorInvalidValue,)

    @classmethod
    def cudaMalloc(cls, nbytes: int):
        buf = ctypes.create_string_buffer(int(nbytes))
        _ALLOCATIONS[ctypes.addressof(buf)] = buf
        return cls.cudaError_t.cudaSuccess, ctypes.addressof(buf)

    @classmethod
    def cudaFree(cls, ptr: int):
        ok = _ALLOCATIONS.pop(int(ptr), None) is not None
        return (cls.cudaError_t.cudaSuccess if ok else cls.cudaError_t.cudaErrorInvalidValue,)

    @classmethod
    def cudaMemcpyAsync(cls, dst: int, src: int, count: int, kind, stream):
        device = dst if kind == cls.cudaMemcpyKind.cudaMemcpyHostToDevice else src
        device_bytes(device, count)  # raises outside an allocation
        if stream not in cls.streams:
            return (cls.cudaError_t.cudaErrorInvalidValue,)
        ctypes.memmove(dst, src, count)
        return (cls.cudaError_t.cudaSuccess,)


def install(monkeypatch) -> None:
    """Make `import tensorrt` and `from cuda.bindings import runtime` find these fakes."""
    import sys
    import types

    module = sys.modules[__name__]
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cudart
    cuda = types.ModuleType("cuda")
    cuda.bindings = bindings
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)
