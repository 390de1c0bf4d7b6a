"""Fit the intended-use gate at export, from the FP32 engine's own features on real images.

- pixel rules: the range of the training images' pixel statistics, with margins;
- the orientation head: multinomial logistic regression on the standardised features of the
  training images shown upright and as each wrong presentation (self-supervised: the labels
  are the transforms, not diagnoses);
- the typicality distance: class-conditional Gaussians with one shared, shrunk covariance on
  the early stages' features;
- the threshold: on validation images (never test images), so that about 1 % are refused,
  plus the validation figures drift is later compared against.

Features come from the exported FP32 graph through the same runner the device uses, so the
gate is fitted on exactly what the engines compute.
"""

from __future__ import annotations

import numpy as np

from edgecxr.core.data.decode import decode_file
from edgecxr.scope.learned import TRANSFORMS, UPRIGHT, LearnedGate
from edgecxr.scope.pixels import PixelRules, statistics

FIT_SIZE = 1000  # training images the head and the distance are fitted on
VAL_SIZE = 600  # validation images the scales and the threshold are set on
TARGET_REFUSALS = 0.01  # share of in-scope validation images the learned stage may refuse
NORM_QUANTILE = 0.995
SHRINK = 0.1  # covariance shrinkage towards its mean variance: stable with few images
TYPICAL_STAGES = ("stage1", "stage2")  # early stages: texture and contrast, not diagnosis


def present(pixels: np.ndarray, name: str, rng: np.random.Generator) -> np.ndarray:
    """A decoded picture shown as `name` (one of scope.learned.TRANSFORMS)."""
    grey = pixels.mean(axis=2) if pixels.ndim == 3 else pixels
    if name == UPRIGHT:
        return grey
    if name in ("rot90", "rot180", "rot270"):
        return np.ascontiguousarray(np.rot90(grey, {"rot90": 1, "rot180": 2, "rot270": 3}[name]))
    if name == "vflip":
        return np.ascontiguousarray(grey[::-1])
    if name == "invert":
        return 1.0 - grey
    if name == "crop":
        h, w = grey.shape
        f = rng.uniform(0.25, 0.45)
        ch, cw = max(1, int(h * f)), max(1, int(w * f))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        return np.ascontiguousarray(grey[y:y + ch, x:x + cw])
    raise ValueError(f"unknown presentation {name!r}")


def features_of(runner, spec, paths, transforms, seed: int, advance=None) -> tuple[dict, list[dict]]:
    """Features per transform (arrays in path order; the upright logits under "logits") and
    the upright pixel statistics."""
    from edgecxr.backends.base import FEATURES, LOGITS

    rng = np.random.default_rng(seed)
    feats: dict[str, list] = {t: [] for t in [*transforms, LOGITS]}
    stats: list[dict] = []
    batch: dict[str, list] = {t: [] for t in transforms}

    def flush():
        for t in transforms:
            if batch[t]:
                outputs = runner.infer_outputs(np.stack(batch[t]))
                feats[t].append(outputs[FEATURES])
                if t == UPRIGHT:
                    feats[LOGITS].append(outputs[LOGITS])
                batch[t] = []
    for path in paths:
        pixels = decode_file(path).pixels
        stats.append(statistics(pixels))
        for t in transforms:
            batch[t].append(spec(present(pixels, t, rng)))
        if len(batch[transforms[0]]) == 16:
            flush()
        if advance is not None:
            advance(1)
    flush()
    return {t: np.concatenate(v).astype(np.float64) for t, v in feats.items()}, stats


def fit_head(x: np.ndarray, y: np.ndarray, classes: int, weight_decay: float = 1e-3):
    """Multinomial logistic regression (L-BFGS, from zeros: deterministic) on standardised x."""
    from edgecxr.core.optional import require

    torch = require("torch", "fitting the gate at export")
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    xt = torch.tensor((x - mean) / scale, dtype=torch.float64)
    yt = torch.tensor(y, dtype=torch.long)
    w = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + weight_decay * (w ** 2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return mean, scale, w.detach().numpy(), b.detach().numpy()


def fit_gaussians(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class means and the precision of one shared covariance, shrunk towards its mean variance."""
    classes = sorted(set(labels.tolist()))
    means = np.stack([x[labels == c].mean(axis=0) for c in classes])
    centred = np.concatenate([x[labels == c] - means[i] for i, c in enumerate(classes)])
    cov = centred.T @ centred / max(len(centred) - 1, 1)
    cov = (1 - SHRINK) * cov + SHRINK * np.trace(cov) / len(cov) * np.eye(len(cov))
    return means, np.linalg.inv(cov)


def feature_slice(layout: list[dict], names=TYPICAL_STAGES) -> tuple[int, int]:
    """The columns of the features output the distance reads (contiguous leading stages)."""
    start, lo, hi = 0, None, None
    for part in layout:
        if part["name"] in names:
            lo = start if lo is None else lo
            hi = start + int(part["size"])
        start += int(part["size"])
    if lo is None or hi is None:
        raise ValueError(f"the features output has no {names} (layout {layout})")
    return lo, hi


def gate_images(class_names, calib_data, run, seed: int):
    """(fit, validation) Samples: the run's training and validation images, or a seeded split of
    the calibration folder when there is no run."""
    from edgecxr.exporters.calibration import _pools, stratified_sample

    preferred, rest, _, _ = _pools(class_names, calib_data, run, need_calibration=False)
    if not preferred:  # a calibration folder: a quarter for validation, never the same image twice
        preferred = stratified_sample(rest, max(len(rest) // 4, 1), seed + 3)
        chosen = {s.rel for s in preferred}
        rest = [s for s in rest if s.rel not in chosen]
    return stratified_sample(rest, FIT_SIZE, seed), stratified_sample(preferred, VAL_SIZE, seed + 3)


def fit_gate(runner, spec, layout: list[dict], fit, val, *, seed: int, task) -> tuple[PixelRules, LearnedGate, dict]:
    """`fit`/`val`: Samples (path, label) of training and validation images. `task(label, total)`
    returns a progress callback. Returns the pixel rules, the learned stage and a summary with
    the validation images' scores, logits and pixel statistics."""
    transforms = list(TRANSFORMS)
    train, stats = features_of(runner, spec, [s.path for s in fit], transforms, seed,
                               task("gate: training images x 7 presentations", len(fit)))
    pixels = PixelRules.fit(stats)
    x = np.concatenate([train[t] for t in transforms])  # (the "logits" entry is not a presentation)
    y = np.concatenate([np.full(len(train[t]), i) for i, t in enumerate(transforms)])
    mean, scale, weight, bias = fit_head(x, y, len(transforms))
    lo, hi = feature_slice(layout)
    labels = np.array([s.label for s in fit])
    means, precision = fit_gaussians(train[UPRIGHT][:, lo:hi], labels)
    gate = LearnedGate(transforms, mean, scale, weight, bias, (lo, hi), means, precision, 1.0, 1.0, 1.0)
    held, val_stats = features_of(runner, spec, [s.path for s in val], [UPRIGHT], seed + 1,
                                  task("gate: validation images", len(val)))
    part = gate.parts(held[UPRIGHT])
    gate.head_norm = float(max(np.quantile(part["not_upright"], NORM_QUANTILE), 1e-6))
    gate.distance_norm = float(max(np.quantile(part["distance"], NORM_QUANTILE), 1e-6))
    scores = gate.scores(held[UPRIGHT])
    gate.threshold = float(np.quantile(scores, 1 - TARGET_REFUSALS))
    summary = {"fit_images": len(fit), "validation_images": len(val), "presentations": transforms,
               "typical_stages": list(TYPICAL_STAGES), "target_refusal_rate": TARGET_REFUSALS}
    return pixels, gate, {**summary, "scores": scores, "logits": held["logits"], "stats": val_stats}


def validation_record(pixels: PixelRules, gate: LearnedGate, held: dict, rule, class_names,
                      temperature: float = 1.0) -> dict:
    """What drift compares a box's recent images against: the validation images' refusal rate,
    label shares (under the bundle's decision rule, on its calibrated probabilities) and gate scores."""
    from edgecxr.core.metrics import calibrated_softmax

    refused = np.array([pixels.check(s) is not None for s in held["stats"]]) | (held["scores"] > gate.threshold)
    labels = [rule.result_fields(p)["label"] for p in calibrated_softmax(held["logits"], temperature)]
    kept = [label for label, r in zip(labels, refused) if not r]
    names = [*class_names, *(["UNCERTAIN"] if "UNCERTAIN" in labels else [])]
    scores = held["scores"][~refused]
    return {"images": len(labels), "refusal_rate": round(float(refused.mean()), 6),
            "label_shares": {n: round(kept.count(n) / max(len(kept), 1), 6) for n in names},
            "score_mean": round(float(scores.mean()), 6) if len(scores) else None,
            "score_sd": round(float(scores.std()), 6) if len(scores) else None, "window_hint": 200}
