"""INT8 for ONNX Runtime: static QDQ quantization with per-channel symmetric 7-bit weights.

Two graphs, because one does not serve both targets (see docs/export.md for the
measurement): unsigned asymmetric activations run fastest on x86 CPUs, while TensorRT's
explicit quantization needs signed symmetric activations. Only MatMul/Gemm/Conv with a
constant weight are quantized; LayerNorm, Softmax and GELU stay in float, and so do the
final classifier, the attention MatMuls of two activations (Swin-V2's cosine attention
q·kᵀ and attention·v), and the input layer (the patch embedding): leaving one layer at a time
in float on the reference model, only the input layer mattered, cutting the mean |ΔP(positive)|
against FP32 by a third to a half for every engine (docs/export.md); it is a tiny share of
the compute.

Weights use 7 bits (`reduce_range`): on CPUs without VNNI, ONNX Runtime's u8×s8 kernels
(`vpmaddubsw`) add pairs of products in saturating 16-bit lanes, and full-range per-channel
weights overflow them, so the same graph answered differently on AVX2 and on VNNI CPUs
(98.2% vs 99.0% agreement with FP32 on the 624 test images). With |w| ≤ 63 a pair sum stays
below 2·255·63 = 32130 < 32767 on every CPU.

Swin-V2's exported graph makes ORT's symbolic shape inference fail (even with a static
batch), so pre-processing falls back to ONNX's own shape inference, which handles it,
followed by ORT's graph optimisation; the fallback is recorded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecxr.core.optional import require

QUANTIZED_OPS = ["MatMul", "Gemm", "Conv"]
MODES = {
    # name: (activation type, activations symmetric, role)
    "cpu": ("QUInt8", False, "cpu"),
    "symmetric": ("QInt8", True, "tensorrt-source"),
}


def activation_matmuls(onnx_path: Path) -> list[str]:
    """MatMuls of two activations (attention), which stay in float."""
    onnx = require("onnx", "INT8 quantization")
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    constants = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant"
                                                        for o in n.output}
    return [n.name for n in graph.node if n.op_type == "MatMul" and not any(i in constants for i in n.input)]


def input_layer_nodes(onnx_path: Path) -> list[str]:
    """The Conv/MatMul/Gemm nearest the graph input (Swin's patch embedding): the first layer
    every image meets, whose INT8 error moved P(positive) more than any other's."""
    return _nearest_layer(onnx_path, ("Conv", "MatMul", "Gemm"), from_input=True)


def classifier_nodes(onnx_path: Path) -> list[str]:
    """The MatMul/Gemm nearest the graph output (the classification head)."""
    return _nearest_layer(onnx_path, ("Gemm", "MatMul"), from_input=False)


def _nearest_layer(onnx_path: Path, ops: tuple[str, ...], *, from_input: bool) -> list[str]:
    """Breadth-first from the graph's inputs (along consumers) or outputs (along producers)
    to the first node of one of `ops`; its name, or nothing."""
    onnx = require("onnx", "INT8 quantization")
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    step: dict[str, list] = {}
    for node in graph.node:
        for name in (node.input if from_input else node.output):
            step.setdefault(name, []).append(node)
    frontier = [t.name for t in (graph.input if from_input else graph.output[:1])]  # the logits, not the features
    seen: set[str] = set()
    while frontier:
        for node in step.get(frontier.pop(0), []):
            if node.name in seen:
                continue
            seen.add(node.name)
            if node.op_type in ops:
                return [node.name]
            frontier.extend(node.output if from_input else node.input)
    return []


def preprocess_for_quantization(src: Path, dst: Path) -> dict:
    quantization = require("onnxruntime.quantization", "INT8 quantization")
    try:
        quantization.quant_pre_process(str(src), str(dst))
        return {"shape_inference": "symbolic"}
    except Exception as exc:  # ORT's symbolic inference raises assorted errors on Swin-V2
        quantization.quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
        return {"shape_inference": "onnx (symbolic shape inference failed: "
                                   f"{type(exc).__name__})"}


class _Reader:
    """ORT CalibrationDataReader over preprocessed images, one image per call."""

    def __init__(self, inputs: np.ndarray, input_name: str):
        self.inputs = inputs
        self.input_name = input_name
        self.index = 0

    def get_next(self):
        if self.index >= len(self.inputs):
            return None
        item = {self.input_name: self.inputs[self.index:self.index + 1]}
        self.index += 1
        return item

    def rewind(self):
        self.index = 0


def quantize(prepared: Path, dst: Path, calibration: np.ndarray, *, mode: str, input_name: str,
             exclude: list[str], attention: list[str], input_layer: list[str]) -> dict:
    quantization = require("onnxruntime.quantization", "INT8 quantization")
    activation, symmetric, role = MODES[mode]
    reader = _Reader(calibration, input_name)
    quantization.quantize_static(
        str(prepared), str(dst), reader, quant_format=quantization.QuantFormat.QDQ,
        op_types_to_quantize=QUANTIZED_OPS, per_channel=True, reduce_range=True,
        activation_type=getattr(quantization.QuantType, activation),
        weight_type=quantization.QuantType.QInt8, nodes_to_exclude=[*input_layer, *exclude, *attention],
        calibrate_method=quantization.CalibrationMethod.MinMax,
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": symmetric},
    )
    return {"tool": "onnxruntime.quantization.quantize_static", "format": "QDQ",
            "activations": f"{activation}, {'symmetric' if symmetric else 'asymmetric'}, per-tensor",
            "weights": "QInt8, symmetric, per-channel, 7-bit (reduce_range: no 16-bit saturation without VNNI)",
            "calibration_method": "MinMax", "quantized_ops": [f"{op} with a constant weight" for op in QUANTIZED_OPS],
            "kept_in_float": ["LayerNormalization", "Softmax", "GELU (Erf)",
                              f"attention MatMuls of two activations ({len(attention)})",
                              *(f"input layer, the patch embedding ({n})" for n in input_layer),
                              *(f"classifier ({n})" for n in exclude)],
            "role": role}
