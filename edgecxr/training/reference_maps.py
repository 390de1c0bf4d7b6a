"""The PyTorch side of `parity-check --explain`: the bundle's source checkpoint, or a copy of it
with freshly drawn weights, as a plain `infer` function, so the very same occlusion code that runs
on the engines runs on it. Workstation only (torch, transformers); the device never imports it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecxr.core.optional import require


def torch_infer(checkpoint: str | Path, *, randomised: bool = False, seed: int = 0):
    """(N, 3, H, W) float32 -> logits. `randomised`: the same architecture with every weight drawn anew
    (the model-randomisation test of Adebayo et al. 2018: a map that survives it does not depend on
    what the model learned)."""
    torch = require("torch", "PyTorch reference maps")
    from edgecxr.training.model import _transformers, load_checkpoint

    model, _, _ = load_checkpoint(checkpoint)
    if randomised:
        torch.manual_seed(seed)
        model = _transformers().Swinv2ForImageClassification(model.config).eval()

    def infer(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            pixels = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
            return model(pixel_values=pixels).logits.float().numpy()

    return infer
