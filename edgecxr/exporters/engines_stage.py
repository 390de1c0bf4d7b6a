"""The export's engines after FP32 ONNX: the OpenVINO IR and the INT8 graphs.

Every INT8 engine is quantized once per calibration candidate and the best kept
(calibration_choice). Candidates are the outer loop, so each candidate's images are decoded
once for all engines and only one candidate's tensors are in memory at a time (300 images of
a 256-px model are 236 MB).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecxr.exporters.calibration import ImagePlan
from edgecxr.exporters.calibration_choice import BestOf


@dataclass
class Int8Engine:
    name: str
    backend: str
    rels: list[str]
    role: str
    quantize: Callable[[np.ndarray, list[Path]], dict]  # (calibration inputs, output paths) -> record


def _ort_engines(folder: Path, targets) -> tuple[list[Int8Engine], Path]:
    """The CPU graph for ONNX Runtime, the signed symmetric graph for TensorRT."""
    from edgecxr.exporters import ort_int8

    prepared = folder / "onnx" / ".prepared.onnx"
    pre = ort_int8.preprocess_for_quantization(folder / "onnx" / "model.fp32.onnx", prepared)
    exclude = ort_int8.classifier_nodes(prepared)
    attention = ort_int8.activation_matmuls(prepared)
    first = ort_int8.input_layer_nodes(prepared)
    graphs = (("cpu", "onnxruntime-int8", "onnx/model.int8.onnx"),
              ("symmetric", "onnxruntime-int8-symmetric", "onnx/model.int8-symmetric.onnx"))
    engines = []
    for mode, name, rel in graphs:
        if mode == "cpu" and "onnxruntime" not in targets:
            continue

        def quantize(calib: np.ndarray, paths: list[Path], mode=mode) -> dict:
            info = ort_int8.quantize(prepared, paths[0], calib, mode=mode, input_name="pixel_values",
                                     exclude=exclude, attention=attention, input_layer=first)
            info.pop("role")
            return {**info, "pre_process": pre}
        engines.append(Int8Engine(name, "onnxruntime", [rel], ort_int8.MODES[mode][2], quantize))
    return engines, prepared


def _openvino_engine(ir_xml: Path, onnx_path: Path) -> Int8Engine:
    from edgecxr.exporters import openvino_int8, ort_int8

    first = ort_int8.input_layer_nodes(onnx_path)

    def quantize(calib: np.ndarray, paths: list[Path]) -> dict:
        return openvino_int8.nncf_int8(openvino_int8.read_ir(ir_xml), paths[0], calib, input_layer=first)
    return Int8Engine("openvino-int8", "openvino", ["openvino/model.int8.xml", "openvino/model.int8.bin"], "cpu",
                      quantize)


def engines_stage(folder: Path, plan: ImagePlan, options, targets, recorder, load: Callable, positive: int,
                  reporter) -> None:
    """Writes and records every artifact after onnxruntime-fp32, in the manifest's usual order."""
    from edgecxr.exporters import openvino_int8

    engines: list[Int8Engine] = []
    prepared = None
    if options.int8 and ("onnxruntime" in targets or "tensorrt" in targets):
        ort, prepared = _ort_engines(folder, targets)
        engines += ort
    ir = None
    if "openvino" in targets:
        (folder / "openvino").mkdir()
        precision = "fp16" if options.fp16 else "fp32"
        ir = (precision, [f"openvino/model.{precision}.xml", f"openvino/model.{precision}.bin"])
        openvino_int8.to_ir(folder / "onnx" / "model.fp32.onnx", folder / ir[1][0], fp16=options.fp16)
        if options.int8:
            engines.append(_openvino_engine(folder / ir[1][0], folder / "onnx" / "model.fp32.onnx"))
    chosen = _quantize_candidates(folder, plan, engines, recorder, load, positive, reporter) if engines else {}

    def record_int8(backend: str) -> None:
        for engine in (e for e in engines if e.backend == backend):
            recorder.add(engine.name, engine.backend, "int8", engine.rels, engine.role,
                         {"quantization": chosen[engine.name]})
    record_int8("onnxruntime")
    if ir is not None:
        recorder.add(f"openvino-{ir[0]}", "openvino", ir[0], ir[1], "reference-ir")
    record_int8("openvino")
    if prepared is not None:
        prepared.unlink()


def _quantize_candidates(folder: Path, plan: ImagePlan, engines: list[Int8Engine], recorder, load: Callable,
                         positive: int, reporter) -> dict[str, dict]:
    selection = reference = None
    if len(plan.seeds) > 1:
        selection = load(plan.selection, "selection images")
        reference = recorder.fp32_probabilities(selection)
        reporter.log(f"INT8: {len(plan.seeds)} calibration candidates (seeds {plan.seeds[0]}–{plan.seeds[-1]}) "
                     f"per engine, chosen on {len(selection)} selection images")
    contests = {e.name: BestOf(folder, e.rels, e.backend, selection, reference, positive) for e in engines}
    advance = reporter.task("INT8 engines" + (f" × {len(plan.seeds)} candidates" if selection is not None else ""),
                            len(engines) * len(plan.seeds))
    for k, (seed, sample) in enumerate(zip(plan.seeds, plan.candidates, strict=True)):
        calibration = load(sample, "calibration images" + (f" (seed {seed})" if selection is not None else ""))
        for engine in engines:
            contest = contests[engine.name]
            contest.offer(k, seed, engine.quantize(calibration, contest.paths(k)))
            advance(1)
        del calibration
    results = {name: contest.result() for name, contest in contests.items()}
    if selection is not None:
        reporter.log("INT8 calibration chosen: " + ", ".join(f"{name} seed {r['calibration_seed']}"
                                                            for name, r in results.items()))
    return results
