"""Build a TensorRT engine from the bundle's QDQ ONNX graph (TensorRT 10 Python API).

Explicit quantization: the Q/DQ nodes in the graph fix which tensors are INT8; the INT8
builder flag lets TensorRT honour them and FP16 lets the rest fall back to half precision
instead of FP32. One optimisation profile covers batch 1 to 8.
"""

from __future__ import annotations

from pathlib import Path

from edgecxr.backends.tensorrt.compat import engine_record, profile_shapes, require_tensorrt
from edgecxr.core.errors import EdgecxrError

WORKSPACE_BYTES = 1 << 30


def build_engine(onnx_path: str | Path, engine_path: str | Path, *, precision: str, gpu: dict,
                 input_shape, max_batch: int = 8) -> dict:
    """Parse, build and serialize; returns the record that goes into bundle.json."""
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgecxrError(f"TensorRT cannot parse the ONNX graph: {errors}", path=onnx_path,
                           fix="re-export the bundle with this edgecxr version")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    shapes = profile_shapes(input_shape, max_batch=max_batch)
    name = _single_input(network, shapes, onnx_path)
    profile = builder.create_optimization_profile()
    profile.set_shape(name, *shapes)
    if config.add_optimization_profile(profile) < 0:
        raise EdgecxrError(f"TensorRT refused the optimisation profile {shapes} for input {name!r}",
                           path=onnx_path, fix="check --max-batch and the bundle's input size")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgecxrError("TensorRT failed to build the engine (see its log above)", path=onnx_path,
                           fix="check the GPU memory and the TensorRT version")
    Path(engine_path).write_bytes(bytes(serialized))
    return engine_record(gpu, trt.__version__, precision, shapes)


def _single_input(network, shapes, onnx_path) -> str:
    """The graph's one input, whose static axes must match the profile's."""
    if network.num_inputs != 1:
        raise EdgecxrError(f"the ONNX graph has {network.num_inputs} inputs; the classifier has one",
                           path=onnx_path, fix="re-export the bundle with `edgecxr export`")
    tensor = network.get_input(0)
    declared = tuple(tensor.shape)
    if len(declared) != len(shapes[0]) or any(d >= 0 and not lo <= d <= hi
                                              for d, lo, hi in zip(declared, shapes[0], shapes[2])):
        raise EdgecxrError(f"the graph's input {tensor.name!r} has shape {declared}, which the profile "
                           f"{shapes[0]} to {shapes[2]} does not fit", path=onnx_path,
                           fix="build from the bundle's own ONNX graph (its preprocess size)")
    return tensor.name
