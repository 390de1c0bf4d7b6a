"""PyTorch -> ONNX with a dynamic batch axis, simplified, checked, and verified on real images."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from edgecxr.core.errors import EdgecxrError
from edgecxr.core.optional import require

INPUT_NAME = "pixel_values"
OUTPUT_NAME = "logits"
FEATURES_NAME = "features"
MAX_LOGIT_DIFF = 1e-4


def export_onnx(model, spec, path: Path, *, opset: int = 18) -> dict:
    """Export with torch.onnx (dynamo exporter), slim with onnxslim, check with onnx.checker."""
    require("torch", "ONNX export")  # the error names the extra that installs it
    import torch  # a real import, so the wrapper below subclasses a class the type checker knows

    onnx = require("onnx", "ONNX export")
    onnxslim = require("onnxslim", "ONNX export")

    class LogitsAndFeatures(torch.nn.Module):
        """The classifier's logits exactly as its own forward computes them, plus the features."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values):
            body = self.inner.swinv2(pixel_values=pixel_values, output_hidden_states=True)
            logits = self.inner.classifier(body.pooler_output)
            stages = [h.mean(dim=1) for h in body.hidden_states[1:]]
            return logits, torch.cat([*stages, body.pooler_output], dim=1)

        def layout(self, example) -> list[dict]:
            """What the features output holds, in order: each encoder stage's output averaged
            over its tokens, then the pooled output the classifier reads (the gate's learned
            score reads early stages for texture, late ones for anatomy)."""
            with torch.inference_mode():
                body = self.inner.swinv2(pixel_values=example, output_hidden_states=True)
            sizes = [int(h.shape[-1]) for h in body.hidden_states[1:]] + [int(body.pooler_output.shape[-1])]
            names = [f"stage{i + 1}" for i in range(len(sizes) - 1)] + ["pooled"]
            return [{"name": n, "size": size} for n, size in zip(names, sizes)]

    wrapped = LogitsAndFeatures(model.eval()).eval()
    example = torch.zeros(2, 3, spec.height, spec.width)
    raw = path.with_suffix(".raw.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapped, (example,), str(raw), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME, FEATURES_NAME],
            opset_version=opset, dynamo=True, verbose=False, report=False,
            dynamic_shapes={"pixel_values": {0: torch.export.Dim("batch", min=1, max=1024)}},
        )
    graph = onnx.load(str(raw))  # pulls in external data the exporter may have written
    slim = onnxslim.slim(graph)
    onnx.checker.check_model(slim, full_check=True)
    onnx.save(slim, str(path))
    for leftover in raw.parent.glob(raw.name + "*"):
        leftover.unlink()
    return {"opset": opset, "exporter": "torch.onnx (dynamo)", "simplifier": "onnxslim",
            "nodes": len(slim.graph.node), "outputs": [OUTPUT_NAME, FEATURES_NAME],
            "features": wrapped.layout(example)}


def verify_against_torch(model, onnx_path: Path, inputs: np.ndarray, *, tolerance: float = MAX_LOGIT_DIFF,
                         batch_size: int = 16) -> dict:
    """Max absolute logit difference between PyTorch and ONNX Runtime on real images."""
    torch = require("torch", "ONNX verification")
    from edgecxr.backends import RunnerOptions, open_runner

    runner = open_runner("onnxruntime", onnx_path, RunnerOptions())
    worst = 0.0
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start:start + batch_size]
            ref = model(pixel_values=torch.from_numpy(batch)).logits.float().numpy()
            worst = max(worst, float(np.abs(ref - runner.infer(batch)).max()))
    runner.close()
    if worst > tolerance:
        raise EdgecxrError(f"the ONNX model differs from PyTorch by {worst:.3g} in the logits "
                           f"(allowed {tolerance:g}) on {len(inputs)} real images", path=onnx_path,
                           fix="report this with the model's config.json; try another --opset")
    return {"images": len(inputs), "max_abs_logit_diff": worst, "tolerance": tolerance}
