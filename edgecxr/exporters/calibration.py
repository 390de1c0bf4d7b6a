"""Choosing calibration and held-out images: real data only, stratified, seeded, recorded.

Calibration comes from `--calib-data` or else from the training images named in the
run's run.json. Held-out images for the agreement check are never calibration images, and
from a run they are its validation images only, which the model was not trained on; only
a run without a validation split falls back to unused training images, and says so.

With several calibration candidates (`--calib-candidates`, one seeded sample each) a third
set, the selection images, decides between them: the rest of the validation split, else
images no candidate calibrated on. They are never held-out images, so the agreement the
bundle records for the chosen engine is not the number it was chosen by.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecxr.core.data.folders import (
    Sample,
    hash_and_check,
    recorded_samples,
    recorded_validation_root,
    samples_fingerprint,
    scan_split,
)
from edgecxr.core.data.roots import portable_path, resolve_recorded
from edgecxr.core.errors import DataError, EdgecxrError

SELECTION_MAX = 400  # images that score calibration candidates: enough to rank them, and each costs
# one inference per candidate and engine (a 256-px model: about 0.1 s of CPU each)


@dataclass
class ImagePlan:
    candidates: list[list[Sample]]  # one calibration sample per seed in `seeds`
    seeds: list[int]
    heldout: list[Sample]
    source: str  # "calib-data" or "run"
    root: Path
    heldout_source: str = ""  # what the held-out images are, in words, for the manifest
    selection: list[Sample] = field(default_factory=list)  # scores the candidates (only when several)
    selection_source: str = ""
    heldout_seed: int = 0  # the seeds the two samples were drawn with, for the manifest
    selection_seed: int = 0

    @property
    def calibration(self) -> list[Sample]:
        """Every image some candidate calibrates on (what held-out images must avoid)."""
        seen: dict[str, Sample] = {}
        for sample in self.candidates:
            seen.update((s.rel, s) for s in sample)
        return list(seen.values())


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
                calib_size: int, heldout_size: int, seed: int, need_calibration: bool,
                candidates: int = 1) -> ImagePlan:
    """Calibration candidate k is drawn with seed + k, held-out images with seed + 1 and from
    images no candidate uses; with one candidate this is the draw of earlier versions."""
    if candidates < 1:
        raise EdgecxrError(f"--calib-candidates must be at least 1, not {candidates}")
    preferred, rest, root, source = _pools(class_names, calib_data, run, need_calibration)
    seeds = [seed + k for k in range(candidates if need_calibration else 0)]
    drawn = [stratified_sample(rest, calib_size, s) for s in seeds]
    used = {s.rel for sample in drawn for s in sample}
    pool = [s for s in preferred if s.rel not in used]
    if pool:
        heldout_source = "the run's validation images (not trained on, not calibration)"
    else:
        pool = [s for s in rest if s.rel not in used]
        why = ("the run's validation images are not here" if run and run["split"].get("val") else
               "the run has no validation split")
        heldout_source = ("calibration-folder images not used for calibration" if source == "calib-data" else
                          f"training images not used for calibration ({why}: the model was trained on them)")
    heldout = stratified_sample(pool, heldout_size, seed + 1)
    if need_calibration and not any(drawn):
        raise DataError("no calibration images found", path=calib_data or root,
                        fix="give a folder with real images")
    if not heldout:
        raise DataError("no images left for the held-out agreement check after calibration",
                        path=calib_data or root, fix="lower --calib-size or give more images")
    plan = ImagePlan(drawn, seeds, heldout, source, root, heldout_source, heldout_seed=seed + 1,
                     selection_seed=seed + 2)
    if len(seeds) > 1:
        _add_selection(plan, preferred, rest, calib_data or root)
    hash_and_check(plan.calibration + plan.heldout + plan.selection)
    return plan


def _pools(class_names, calib_data, run, need_calibration) -> tuple[list[Sample], list[Sample], Path, str]:
    """(preferred held-out images, calibration images, root, source)."""
    if calib_data is not None:
        split = scan_split(calib_data, "calibration")
        if split.classes != class_names:
            raise DataError(f"calibration classes {split.classes} differ from the model's {class_names}",
                            path=calib_data, fix="give a folder with one subfolder per model class")
        return [], split.samples, split.root, "calib-data"
    if run is not None:
        root = resolve_recorded(run["split"]["train_root"])
        if not root.is_dir():
            raise EdgecxrError("the training images named in run.json are not here", path=root,
                               fix="pass --calib-data DIR with real images of the training distribution")
        # a val/ folder's images are relative to it; a carved split's to train/ (val_root = train_root)
        val_root = recorded_validation_root(run)
        val = recorded_samples(val_root, run["split"]["val"], run["classes"]) \
            if val_root is not None and val_root.is_dir() else []
        return val, recorded_samples(root, run["split"]["train"], run["classes"]), root, "run"
    if need_calibration:
        raise EdgecxrError("INT8 needs calibration images, and this model has no run.json naming its "
                           "training images", fix="pass --calib-data DIR (real images, one subfolder "
                           "per class); edgecxr never calibrates on random or toy data")
    raise EdgecxrError("verifying the ONNX export needs real images", fix="pass --calib-data DIR")


def _add_selection(plan: ImagePlan, preferred: list[Sample], rest: list[Sample], where: Path) -> None:
    taken = {s.rel for s in plan.heldout} | {s.rel for s in plan.calibration}
    pool = [s for s in preferred if s.rel not in taken]
    plan.selection_source = "the run's validation images not held out (not trained on, not calibration)"
    if not pool:
        pool = [s for s in rest if s.rel not in taken]
        plan.selection_source = "images no calibration candidate uses and not held out"
    plan.selection = stratified_sample(pool, SELECTION_MAX, plan.selection_seed)
    if not plan.selection:
        raise DataError(f"no images left to choose between {len(plan.seeds)} calibration candidates: every "
                        "image calibrates a candidate or checks agreement", path=where,
                        fix="pass --calib-candidates 1, a smaller --calib-size or --heldout-size, or more images")


def sample_record(samples: Sequence[Sample], root: Path, seed: int) -> dict:
    """`root`: what the paths are relative to, unless the samples all lie under another one (the
    validation images of a run with a val/ folder are relative to it, not to train/)."""
    roots = {s.path.parents[s.rel.count("/")] for s in samples}  # Sample.path is root / rel
    root = roots.pop() if len(roots) == 1 else root
    return {
        "root": portable_path(root), "size": len(samples), "seed": seed,
        "fingerprint": samples_fingerprint(samples),
        "files": [{"path": s.rel, "sha256": s.sha256} for s in samples],
    }
