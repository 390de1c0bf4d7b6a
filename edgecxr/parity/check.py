"""Score every runnable engine of a bundle on the labelled test set and hold it to the
PyTorch reference report: same images, same decoder, same preprocessing as the runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecxr.backends import RunnerOptions, open_runner
from edgecxr.backends.base import FEATURES, LOGITS
from edgecxr.core.bundle import Artifact, Bundle
from edgecxr.core.data.folders import hash_and_check, scan_split
from edgecxr.core.data.roots import portable_path, resolve_recorded
from edgecxr.core.decision import DecisionRule
from edgecxr.core.errors import DataError, EdgecxrError
from edgecxr.core.metrics import ECE_BINS, calibrated_softmax, expected_calibration_error
from edgecxr.core.preprocess import load_model_inputs
from edgecxr.core.provenance import library_versions, utc_now
from edgecxr.core.reporting import build_report, calibrate_rows, load_report, rows_from_probabilities
from edgecxr.explain.occlusion import DEFAULT_GRID, Grid
from edgecxr.parity.stats import mcnemar_exact, paired_difference, wilson_interval
from edgecxr.runtime.selection import runnable_artifacts
from edgecxr.scope.learned import LearnedGate

PARITY_SCHEMA = "edgecxr.parity/1"


@dataclass
class ExplainRequest:
    """`--explain`: how many test images to map, and the grid; `maps` is filled in for the figure."""

    images: int = 40
    grid: Grid | None = None  # None: the watcher's default
    checkpoint: Path | None = None  # PyTorch source; None: the bundle's own, when it is on this machine
    maps: dict = field(default_factory=dict)


@dataclass
class Tolerances:
    max_accuracy_drop: float = 1.0  # percentage points
    max_recall_drop: float = 2.0  # percentage points, per class
    min_agreement: float = 0.995  # at most 3 flips in 624 images
    min_gate_agreement: float = 0.995  # the learned gate's refusals, engine vs FP32 graph

    def at_least_default(self) -> bool:
        """Strict enough for the verdict to count as qualification (engine selection trusts it)."""
        default = Tolerances()
        return (self.max_accuracy_drop <= default.max_accuracy_drop and self.max_recall_drop <= default.max_recall_drop
                and self.min_agreement >= default.min_agreement
                and self.min_gate_agreement >= default.min_gate_agreement)


def resolve_inputs(bundle: Bundle, data: Path | None, reference: Path | None) -> tuple[dict, Path]:
    ref_path = reference or bundle.reference_report_path()
    if ref_path is None:
        raise EdgecxrError("the bundle carries no PyTorch test report and none was given", path=bundle.folder,
                           fix="pass --reference RUN/report.json (written by edgecxr train/evaluate)")
    try:
        ref = load_report(ref_path)
    except (OSError, ValueError) as exc:
        raise EdgecxrError(f"cannot read the reference report ({exc})", path=ref_path,
                           fix="give a report.json written by edgecxr train or evaluate") from exc
    if data is None:
        data = resolve_recorded(ref.get("data", {}).get("root", ""))
        if not data.is_dir():
            raise EdgecxrError(f"the test folder named by the reference report is not here ({data})",
                               path=ref_path, fix="pass --data TEST_DIR (the same images the report was made on)")
    if ref["class_names"] != bundle.class_names:
        raise DataError(f"the reference report's classes {ref['class_names']} differ from the bundle's "
                        f"{bundle.class_names}", path=ref_path, fix="give the report of the model this bundle holds")
    return ref, data


def check_same_data(split, ref: dict, data: Path) -> None:
    """Refuse to compare on other images than the reference's, naming the files that differ."""
    fingerprint = split.fingerprint()
    if fingerprint == ref["data"]["fingerprint"]:
        return
    ours = {s.rel: s.sha256 for s in split.samples}
    theirs = {r["path"]: r["sha256"] for r in ref["rows"]}
    missing = sorted(set(theirs) - set(ours))
    extra = sorted(set(ours) - set(theirs))
    changed = sorted(p for p in set(ours) & set(theirs) if ours[p] != theirs[p])
    parts = [f"{label} ({len(items)}): {', '.join(items[:5])}{' …' if len(items) > 5 else ''}"
             for label, items in (("missing here", missing), ("not in the reference", extra),
                                  ("different content", changed)) if items]
    raise DataError("the test data differs from the reference report's (fingerprint mismatch): " + "; ".join(parts),
                    path=data, fix="run parity-check on exactly the images the PyTorch report was made on")


def score(artifact: Artifact, inputs: np.ndarray, options: RunnerOptions, advance, batch_size: int = 16,
          temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray | None]:
    """Class probabilities (the bundle's calibrated ones) and, where the graph returns them, the
    gate's features."""
    probs, features = [], []
    with open_runner(artifact.backend, artifact.path, options) as runner:
        for start in range(0, len(inputs), batch_size):
            outputs = runner.infer_outputs(inputs[start:start + batch_size])
            probs.append(calibrated_softmax(outputs[LOGITS], temperature))
            if FEATURES in outputs:
                features.append(outputs[FEATURES])
            advance(len(probs[-1]))
    return np.concatenate(probs), (np.concatenate(features) if features and len(features) == len(probs) else None)


def gate_agreement(gate: LearnedGate, reference: np.ndarray, engine: np.ndarray | None, paths: list[str],
                   minimum: float) -> dict:
    """The learned stage's decisions on the engine's features against the FP32 graph's, on the
    same (in-scope) test images: the gate must refuse the same images whatever engine runs it."""
    if engine is None:
        return {"agreement": None, "failures": ["the engine returns no gate features (re-export the bundle)"]}
    ref_scores, eng_scores = gate.scores(reference), gate.scores(engine)
    ref_out, eng_out = ref_scores > gate.threshold, eng_scores > gate.threshold
    share = float((ref_out == eng_out).mean()) if len(paths) else 1.0
    changed = [{"path": paths[i], "reference": bool(ref_out[i]), "engine": bool(eng_out[i]),
                "score_reference": round(float(ref_scores[i]), 4), "score_engine": round(float(eng_scores[i]), 4)}
               for i in np.flatnonzero(ref_out != eng_out)]
    failures = [f"gate agreement {100 * share:.2f}% is under {100 * minimum:g}%"] if share < minimum else []
    return {"agreement": share, "refused": int(eng_out.sum()), "refused_reference": int(ref_out.sum()),
            "changed": changed, "threshold": gate.threshold,
            "score_abs_diff": {"max": float(np.abs(eng_scores - ref_scores).max()) if len(paths) else 0.0,
                               "mean": float(np.abs(eng_scores - ref_scores).mean()) if len(paths) else 0.0},
            "failures": failures}


def calibrated_reference(ref: dict, temperature: float) -> tuple[dict, dict]:
    """The PyTorch report with the bundle's temperature applied to its probabilities, as every engine
    applies it, and the calibration record: the temperature and the test ECE (15 bins) before and
    after. Argmax is unchanged by a temperature, so the report's metrics stand."""
    names = ref["class_names"]
    truth = [names.index(r["label"]) for r in ref["rows"]]
    before = expected_calibration_error(np.array([[r["probabilities"][n] for n in names] for r in ref["rows"]]),
                                        truth)
    rows = calibrate_rows(ref["rows"], names, temperature)
    after = expected_calibration_error(np.array([[r["probabilities"][n] for n in names] for r in rows]), truth)
    return {**ref, "rows": rows}, {"temperature": temperature, "bins": ECE_BINS,
                                   "reference_ece_uncalibrated": before, "reference_ece": after}


def decided_reference(ref: dict, rule: DecisionRule) -> dict:
    """The PyTorch report under the bundle's decision rule: the metrics each engine must keep."""
    if rule.threshold is None and rule.uncertain is None:
        return ref  # the report was made with argmax
    names = ref["class_names"]
    probs = np.array([[r["probabilities"][n] for n in names] for r in ref["rows"]])
    results = rule.labels(probs)
    rows = [{**r, "prediction": names[int(k)], **({"result": results[i]} if rule.uncertain else {})}
            for i, (r, k) in enumerate(zip(ref["rows"], rule.predict(probs)))]
    rebuilt = build_report(rows, names, meta={"positive_class": ref["positive_class"]})
    return {**ref, "metrics": rebuilt["metrics"], "rows": rows}


def compare(ref: dict, report: dict, tolerances: Tolerances, rule: DecisionRule) -> dict:
    """Engine vs reference under one rule; a change to or from UNCERTAIN counts as a flip."""
    names = ref["class_names"]
    pos = ref["positive_class"]
    ref_rows = {r["path"]: r for r in ref["rows"]}
    rows = report["rows"]
    truth = np.array([names.index(r["label"]) for r in rows])
    ref_probs = np.array([[ref_rows[r["path"]]["probabilities"][n] for n in names] for r in rows])
    eng_probs = np.array([[r["probabilities"][n] for n in names] for r in rows])
    ref_pred, eng_pred = rule.predict(ref_probs), rule.predict(eng_probs)
    ref_out, eng_out = rule.decide(ref_probs), rule.decide(eng_probs)
    ref_right, eng_right = ref_pred == truth, eng_pred == truth
    b = int((ref_right & ~eng_right).sum())
    c = int((~ref_right & eng_right).sum())
    n = len(rows)
    dpos = np.abs(eng_probs[:, names.index(pos)] - ref_probs[:, names.index(pos)])
    flipped = [{"path": r["path"], "label": r["label"], "reference": rule.name(ref_out[i]),
                "engine": rule.name(eng_out[i]), "p_reference": float(ref_probs[i, names.index(pos)]),
                "p_engine": float(eng_probs[i, names.index(pos)])}
               for i, r in enumerate(rows) if ref_out[i] != eng_out[i]]
    m, rm = report["metrics"], ref["metrics"]
    deltas = {"accuracy": m["accuracy"] - rm["accuracy"],
              "sensitivity": m["sensitivity"] - rm["sensitivity"],
              "specificity": m["specificity"] - rm["specificity"],
              "macro_f1": m["macro_avg"]["f1"] - rm["macro_avg"]["f1"],
              "roc_auc": None if m["roc_auc"] is None or rm["roc_auc"] is None else m["roc_auc"] - rm["roc_auc"]}
    for name in names:
        for key in ("precision", "recall", "f1"):
            deltas[f"{name}_{key}"] = m["classes"][name][key] - rm["classes"][name][key]
    agreement = float((ref_out == eng_out).mean()) if n else 1.0
    failures = []
    if -100 * deltas["accuracy"] > tolerances.max_accuracy_drop:
        failures.append(f"accuracy dropped {-100 * deltas['accuracy']:.2f} pp (allowed {tolerances.max_accuracy_drop})")
    for name in names:
        drop = -100 * deltas[f"{name}_recall"]
        if drop > tolerances.max_recall_drop:
            failures.append(f"{name} recall dropped {drop:.2f} pp (allowed {tolerances.max_recall_drop})")
    if agreement < tolerances.min_agreement:
        failures.append(f"agreement {100 * agreement:.2f}% is under {100 * tolerances.min_agreement:g}%")
    return {
        "agreement": agreement, "flipped": flipped,
        "uncertain": {"engine": int((eng_out < 0).sum()), "reference": int((ref_out < 0).sum())},
        "p_positive_abs_diff": {"max": float(dpos.max()) if n else 0.0, "mean": float(dpos.mean()) if n else 0.0},
        "mcnemar": {"reference_right_engine_wrong": b, "reference_wrong_engine_right": c,
                    "p_value": mcnemar_exact(b, c)},
        "accuracy_ci95": list(wilson_interval(int(eng_right.sum()), n)),
        "reference_accuracy_ci95": list(wilson_interval(int(ref_right.sum()), n)),
        "accuracy_difference": paired_difference(b, c, n),
        "ece": expected_calibration_error(eng_probs, truth),
        "reference_ece": expected_calibration_error(ref_probs, truth),
        "deltas": deltas,
        "verdict": "FAIL" if failures else "PASS", "failures": failures,
    }


def _no_progress(description: str, total: int) -> Callable[[int], None]:
    def advance(n: int = 1) -> None:
        pass

    return advance


def run_parity(bundle: Bundle, *, data: Path | None = None, reference: Path | None = None,
               backends: list[str] | None = None, precisions: list[str] | None = None,
               tolerances: Tolerances | None = None, options: RunnerOptions | None = None,
               progress: Callable[[str, int], Callable[[int], None]] | None = None,
               explain: ExplainRequest | None = None) -> dict:
    tolerances = tolerances or Tolerances()
    progress = progress or _no_progress
    ref, data = resolve_inputs(bundle, data, reference)
    rule = DecisionRule.from_manifest(bundle.manifest, bundle.folder / "bundle.json")
    split = scan_split(data, "test", bundle.class_names)
    artifacts, skipped = runnable_artifacts(bundle, backends, precisions)
    hash_and_check(split.samples, on_progress=progress("hashing test set", len(split.samples)))
    check_same_data(split, ref, data)
    ref, calibration = calibrated_reference(ref, bundle.temperature)
    ref = decided_reference(ref, rule)
    inputs = load_model_inputs((s.path for s in split.samples), bundle.spec,
                               progress("decode + preprocess", len(split.samples)))
    engines = []
    scored = {a.name: score(a, inputs, options or RunnerOptions(), progress(a.name, len(inputs)),
                            temperature=bundle.temperature) for a in artifacts}
    gate, gate_reference = _gate_reference(bundle, scored, inputs, options, progress)
    for artifact in artifacts:
        probs, features = scored[artifact.name]
        rows = rows_from_probabilities(split.samples, split.classes, probs, rule)
        report = build_report(rows, split.classes, meta={"positive_class": ref["positive_class"]})
        engine = {"artifact": artifact.name, "backend": artifact.backend, "precision": artifact.precision,
                  "role": artifact.role, "metrics": report["metrics"], **compare(ref, report, tolerances, rule),
                  "rows": rows}
        if gate is not None:
            engine["gate"] = gate_agreement(gate, gate_reference, features, [s.rel for s in split.samples],
                                            tolerances.min_gate_agreement)
            engine["failures"] += engine["gate"]["failures"]
            engine["verdict"] = "FAIL" if engine["failures"] else "PASS"
        engines.append(engine)
    section = None if explain is None else _explain(explain, bundle, artifacts, inputs, split, ref, options, progress)
    verdict = "PASS" if all(e["verdict"] == "PASS" for e in engines) and not (section and section["failures"]) \
        else "FAIL"
    result = {
        "schema": PARITY_SCHEMA, "created": utc_now(), "verdict": verdict,
        "bundle": {"name": bundle.name, "path": str(bundle.folder), "checksum": bundle.checksum},
        "reference": {"path": str(reference or bundle.reference_report_path()), "metrics": ref["metrics"],
                      "model_sha256": ref.get("model", {}).get("sha256")},
        "data": {"root": portable_path(data), "fingerprint": ref["data"]["fingerprint"],
                 "n_images": len(split.samples)},
        "class_names": bundle.class_names, "positive_class": ref["positive_class"],
        "decision": rule.to_manifest(), "calibration": calibration,
        "tolerances": tolerances.__dict__, "engines": engines,
        "skipped": [{"artifact": n, "reason": w} for n, w in skipped],
        "versions": library_versions("numpy", "pillow", "onnxruntime", "openvino", "tensorrt"),
    }
    if section is not None:
        result["explain"] = section
    return result


def _gate_reference(bundle: Bundle, scored: dict, inputs: np.ndarray, options,
                    progress) -> tuple[LearnedGate | None, np.ndarray]:
    """The bundle's learned gate and the FP32 graph's features on the test images (what each
    engine's gate decisions are held to), or (None, empty) for a bundle without the gate. The
    FP32 graph's features come from `scored` when it was among the engines checked; it runs
    once more only when it was left out (--backends/--precisions)."""
    record = (bundle.manifest.get("gate") or {}).get("learned")
    fp32 = bundle.find("onnxruntime", "fp32")
    if not record or not fp32:
        return None, np.zeros((0, 0))
    _, features = scored.get(fp32[0].name) or score(fp32[0], inputs, options or RunnerOptions(),
                                                     progress("gate: FP32 features", len(inputs)))
    if features is None:
        return None, np.zeros((0, 0))
    return LearnedGate.load(bundle.folder, record), features


def _explain(request: ExplainRequest, bundle, artifacts, inputs, split, ref, options, progress) -> dict:
    from edgecxr.parity.explain import run_explain

    section, request.maps = run_explain(bundle, artifacts, inputs, split.samples, {r["path"]: r for r in ref["rows"]},
                                        options or RunnerOptions(), images=request.images,
                                        grid=request.grid or DEFAULT_GRID, checkpoint=request.checkpoint,
                                        progress=progress)
    return section
