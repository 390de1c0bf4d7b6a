"""Which layer's INT8 error moves P(positive) most: leave one quantized layer at a time in float.

    python export/int8_layer_sensitivity.py BUNDLE RUN [--mode cpu] [--layers N] [--json FILE]

Quantizes the bundle's FP32 ONNX graph with edgecxr's ONNX Runtime recipe on the run's seed-1216
calibration sample, once with every layer and once per layer left in float, and scores each
graph by mean |ΔP(positive)| against FP32 on the run's validation images (never test images).
This is the search that put the input layer in float (docs/export.md); about 8 s per layer
for the reference model on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from edgecxr.backends import RunnerOptions, open_runner
from edgecxr.core.bundle import load_bundle
from edgecxr.core.metrics import positive_class_index
from edgecxr.core.preprocess import load_model_inputs
from edgecxr.exporters import ort_int8
from edgecxr.exporters.calibration import plan_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("run", type=Path, help="the training run folder (its run.json names the images)")
    parser.add_argument("--mode", choices=sorted(ort_int8.MODES), default="cpu")
    parser.add_argument("--layers", type=int, default=0, help="only the first N layers (0: all)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    bundle = load_bundle(args.bundle)
    run = json.loads((args.run / "run.json").read_text())
    plan = plan_images(class_names=run["classes"], calib_data=None, run=run, calib_size=300, heldout_size=200,
                       seed=1216, need_calibration=True)
    validation = load_model_inputs([plan.root / rel for rel in run["split"]["val"]], bundle.spec)
    calibration = load_model_inputs([s.path for s in plan.calibration], bundle.spec)
    positive = positive_class_index(bundle.class_names)
    fp32 = bundle.folder / "onnx" / "model.fp32.onnx"

    def p_positive(path: Path) -> np.ndarray:
        with open_runner("onnxruntime", path, RunnerOptions()) as runner:
            return runner.probabilities(validation, batch_size=16)[:, positive]

    reference = p_positive(fp32)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        ort_int8.preprocess_for_quantization(fp32, prepared)
        exclude, attention = ort_int8.classifier_nodes(prepared), ort_int8.activation_matmuls(prepared)

        def score(in_float: list[str]) -> dict:
            out = Path(tmp) / "candidate.onnx"
            ort_int8.quantize(prepared, out, calibration, mode=args.mode, input_name="pixel_values",
                              exclude=exclude, attention=attention, input_layer=in_float)
            got = p_positive(out)
            change = np.abs(got - reference)
            return {"mean_abs_prob_diff": round(float(change.mean()), 6),
                    "max_abs_prob_diff": round(float(change.max()), 6),
                    "flips": int(((got > 0.5) != (reference > 0.5)).sum())}  # at argmax, two classes

        import onnx

        graph = onnx.load(str(prepared), load_external_data=False).graph
        layers = [n.name for n in graph.node if n.op_type in ort_int8.QUANTIZED_OPS
                  and n.name not in exclude + attention]
        layers = layers[:args.layers] if args.layers else layers
        results = {"all layers INT8": score([])}
        print(f"all layers INT8: {results['all layers INT8']}", flush=True)
        for name in layers:
            results[name] = score([name])
            print(f"{name} in float: {results[name]}", flush=True)
    ranked = sorted(layers, key=lambda n: results[n]["mean_abs_prob_diff"])
    base = results["all layers INT8"]["mean_abs_prob_diff"]
    print(f"\n{len(validation)} validation images, {args.mode} graph; layers whose float copy helps most:")
    for name in ranked[:5]:
        print(f"  {name}: mean |ΔP| {results[name]['mean_abs_prob_diff']:.5f} "
              f"({100 * (results[name]['mean_abs_prob_diff'] / base - 1):+.0f} %)")
    if args.json:
        args.json.write_text(json.dumps({"mode": args.mode, "images": len(validation), "results": results}, indent=1))


if __name__ == "__main__":
    main()
