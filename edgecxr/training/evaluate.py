"""The PyTorch test-set report of a checkpoint: the reference every engine is held to."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgecxr.core.data.folders import Split, drop_bad, hash_and_check, scan_split
from edgecxr.core.data.roots import portable_path
from edgecxr.core.preprocess import PreprocessSpec
from edgecxr.core.provenance import library_versions
from edgecxr.core.reporting import build_report, rows_from_probabilities, write_report


def predict_probabilities(model, split: Split, spec: PreprocessSpec, *, batch_size: int = 64,
                          device: str = "cpu", workers: int = 0,
                          on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    import torch
    from torch.utils.data import DataLoader

    from edgecxr.training.dataset import FolderDataset

    loader = DataLoader(FolderDataset(split.samples, spec), batch_size=batch_size,
                        num_workers=workers, shuffle=False)
    model = model.to(device).eval()
    chunks = []
    with torch.inference_mode():
        for x, _ in loader:
            logits = model(pixel_values=x.to(device)).logits.float()
            chunks.append(torch.softmax(logits, dim=-1).cpu().numpy())
            if on_batch:
                on_batch(len(x))
    return np.concatenate(chunks).astype(np.float64) if chunks else np.zeros((0, 0))


def evaluate_checkpoint(model_dir: str | Path, test_dir: str | Path, out_dir: str | Path, *,
                        batch_size: int = 64, device: str = "cpu", workers: int = 0,
                        skip_bad: bool = False, progress=None) -> dict:
    """Score `model_dir` on `test_dir` and write the report files into `out_dir`.

    `progress(total)` returns an advance callback; used by the CLI for its progress bar.
    """
    from edgecxr.training.model import checkpoint_sha256, load_checkpoint

    model, spec, class_names = load_checkpoint(model_dir)
    model_dir = Path(model_dir)
    if (model_dir / "model" / "config.json").is_file():
        model_dir = model_dir / "model"
    split = scan_split(test_dir, "test", class_names)
    advance = progress(len(split.samples) * 2) if progress else None
    bad = hash_and_check(split.samples, skip_bad=skip_bad, on_progress=advance)
    if bad:
        split = drop_bad(split, bad)
    probs = predict_probabilities(model, split, spec, batch_size=batch_size, device=device,
                                  workers=workers, on_batch=advance)
    meta = {
        "model": {"path": str(model_dir), "sha256": checkpoint_sha256(model_dir),
                  "name": model_dir.parent.name if model_dir.name == "model" else model_dir.name},
        "data": {"root": portable_path(test_dir), "split": "test",
                 "fingerprint": split.fingerprint(), "skipped_bad": bad},
        "preprocess": spec.to_dict(),
        "engine": {"backend": "pytorch", "precision": "fp32", "device": device},
        "versions": library_versions(),
    }
    report = build_report(rows_from_probabilities(split.samples, class_names, probs), class_names, meta=meta)
    write_report(report, out_dir, images_root=split.root, title="PyTorch test-set report")
    return report
