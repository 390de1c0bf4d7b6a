"""Choosing calibration and held-out images: real data only, stratified, seeded, recorded.

Calibration comes from `--calib-data` or else from the training images named in the
run's run.json. Held-out images for the agreement check are never calibration images, and
from a run they are its validation images only, which the model was not trained on; only
a run without a validation split falls back to unused training images, and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecxr.data.fingerprint import dataset_fingerprint
from edgecxr.data.folders import Sample, hash_and_check, scan_split
from edgecxr.data.roots import portable_path, resolve_recorded
from edgecxr.errors import DataError, EdgecxrError


@dataclass
class ImagePlan:
    calibration: list[Sample]
    heldout: list[Sample]
    source: str  # "calib-data" or "run"
    root: Path
    heldout_source: str = ""  # what the held-out images are, in words, for the manifest


def stratified_sample(samples: Sequence[Sample], n: int, seed: int) -> list[Sample]:
    """n samples with class proportions kept (largest remainders), seeded; input order kept."""
    samples = list(samples)
    if n >= len(samples):
        return samples
    labels = sorted({s.label for s in samples})
    counts = {c: sum(1 for s in samples if s.label == c) for c in labels}
    exact = {c: n * counts[c] / len(samples) for c in labels}
    take = {c: int(exact[c]) for c in labels}
    for c in sorted(labels, key=lambda c: exact[c] - take[c], reverse=True)[: n - sum(take.values())]:
        take[c] += 1
    rng = np.random.default_rng(seed)
    chosen: set[int] = set()
    for c in labels:
        ids = [i for i, s in enumerate(samples) if s.label == c]
        chosen.update(rng.permutation(ids)[: take[c]].tolist())
    return [s for i, s in enumerate(samples) if i in chosen]


def plan_images(*, class_names: list[str], calib_data: Path | None, run: dict | None,
                calib_size: int, heldout_size: int, seed: int, need_calibration: bool) -> ImagePlan:
    if calib_data is not None:
        split = scan_split(calib_data, "calibration")
        if split.classes != class_names:
            raise DataError(f"calibration classes {split.classes} differ from the model's {class_names}",
                            path=calib_data, fix="give a folder with one subfolder per model class")
        preferred, rest, root, source = [], split.samples, split.root, "calib-data"
    elif run is not None:
        root = resolve_recorded(run["split"]["train_root"])
        if not root.is_dir():
            raise EdgecxrError("the training images named in run.json are not here", path=root,
                               fix="pass --calib-data DIR with real images of the training distribution")
        index = {c: i for i, c in enumerate(run["classes"])}
        def samples(rels):
            return [Sample(root / rel, rel, index[rel.split("/")[0]]) for rel in rels]
        preferred, rest, source = samples(run["split"]["val"]), samples(run["split"]["train"]), "run"
    else:
        if need_calibration:
            raise EdgecxrError("INT8 needs calibration images, and this model has no run.json naming its "
                               "training images", fix="pass --calib-data DIR (real images, one subfolder "
                               "per class); edgecxr never calibrates on random or toy data")
        raise EdgecxrError("verifying the ONNX export needs real images", fix="pass --calib-data DIR")
    calibration = stratified_sample(rest, calib_size, seed) if need_calibration else []
    used = {s.rel for s in calibration}
    pool = [s for s in preferred if s.rel not in used]
    if pool:
        heldout_source = "the run's validation images (not trained on, not calibration)"
    else:
        pool = [s for s in rest if s.rel not in used]
        heldout_source = ("calibration-folder images not used for calibration" if source == "calib-data" else
                          "training images not used for calibration (the run has no validation split: "
                          "the model was trained on them)")
    heldout = stratified_sample(pool, heldout_size, seed + 1)
    if need_calibration and not calibration:
        raise DataError("no calibration images found", path=calib_data or root,
                        fix="give a folder with real images")
    if not heldout:
        raise DataError("no images left for the held-out agreement check after calibration",
                        path=calib_data or root, fix="lower --calib-size or give more images")
    hash_and_check(calibration + heldout)
    return ImagePlan(calibration, heldout, source, root, heldout_source)


def sample_record(samples: Sequence[Sample], root: Path, seed: int) -> dict:
    return {
        "root": portable_path(root), "size": len(samples), "seed": seed,
        "fingerprint": dataset_fingerprint((s.rel, s.sha256) for s in samples),
        "files": [{"path": s.rel, "sha256": s.sha256} for s in samples],
    }
