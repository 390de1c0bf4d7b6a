"""`edgecxr export`: checkpoint -> verified ONNX -> INT8 engines -> one verified bundle.

Everything is written into a temporary folder beside the destination and renamed into
place at the end, so a failure (or a full disk) never leaves a half-written bundle.
"""

from __future__ import annotations

import errno
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecxr.core.bundle import (
    BUNDLE_SCHEMA,
    MANIFEST,
    PROBABILITY_CALIBRATION,
    REFERENCE_REPORT,
    covered_files,
    file_entry,
    manifest_checksum,
)
from edgecxr.core.defaults import DEFAULT_SEED
from edgecxr.core.errors import DataError, EdgecxrError
from edgecxr.core.fsutil import atomic_write_json, current_umask
from edgecxr.core.metrics import positive_class_index
from edgecxr.core.preprocess import SPEC_FILENAME, load_model_inputs
from edgecxr.core.progress import Reporter
from edgecxr.core.provenance import library_versions, utc_now
from edgecxr.exporters.agreement import MIN_AGREEMENT
from edgecxr.scope.intended_use import IntendedUse
from edgecxr.scope.learned import ARRAYS as GATE_ARRAYS

TARGETS = ("onnxruntime", "openvino", "tensorrt")
DEFAULT_CANDIDATES = 4


@dataclass
class ExportOptions:
    out: Path
    int8: bool = False
    fp16: bool = False
    targets: tuple[str, ...] = ("onnxruntime", "openvino")
    calib_data: Path | None = None
    calib_size: int = 300
    heldout_size: int = 200
    seed: int = DEFAULT_SEED
    # calibration samples tried per INT8 engine (seeds seed, seed+1, ...); None: DEFAULT_CANDIDATES, or one
    # with a warning when the images are too few to leave any for choosing between them
    calib_candidates: int | None = None
    opset: int = 18
    strict: bool = False
    force: bool = False
    name: str | None = None
    operating_point: tuple[str, float] | None = None  # ("sensitivity", 0.95): see decision.parse_operating_point
    uncertain: tuple[float, float] | None = None  # UNCERTAIN band on P(positive)
    temperature: float | None = None  # None: fitted on validation (exporters/temperature.py); a number: given
    intended_use: dict | None = None  # IntendedUse.to_manifest(); None: the defaults (scope/intended_use.py)
    gate: bool = True  # fit the intended-use gate's pixel and learned stages (needs real images)


@dataclass
class ExportResult:
    bundle: Path
    manifest: dict
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def check_targets(targets) -> tuple[str, ...]:
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise EdgecxrError(f"unknown target(s) {unknown}", fix=f"choose from {', '.join(TARGETS)}")
    return tuple(dict.fromkeys(targets))


def export(source_path: str | Path, options: ExportOptions, reporter: Reporter | None = None) -> ExportResult:
    reporter = reporter or Reporter()
    targets = check_targets(options.targets)
    out = Path(options.out)
    if out.exists() and not options.force:
        raise EdgecxrError("the bundle folder exists", path=out,
                           fix="choose another --out, or pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    from edgecxr.exporters.partial import claim, on_sigterm_raise, remove_stale

    for gone in remove_stale(out):
        reporter.log(f"removed {gone.name}: left by an export that was killed")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    tmp.chmod(0o777 & ~current_umask())  # readable by the device's service user, like any folder
    started = time.monotonic()
    from edgecxr.exporters.quiet import quiet

    try:
        claim(tmp)  # the pid: the next export removes this folder if this process dies without cleaning it
        with on_sigterm_raise(), quiet():  # SIGTERM (systemctl stop, kill) unwinds into the cleanup below
            result = _export_into(tmp, Path(source_path), options, targets, reporter)
        claim(tmp, release=True)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno == errno.ENOSPC:
            raise EdgecxrError("the disk is full; nothing was written", path=out.parent,
                               fix="free space (a tiny-256 bundle needs about 250 MB while exporting)") from exc
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.bundle = out
    result.seconds = round(time.monotonic() - started, 1)
    return result


def _load_inputs(samples, spec, reporter, label: str) -> np.ndarray:
    return load_model_inputs((s.path for s in samples), spec, reporter.task(label, len(samples)))


class _Recorder:
    """Records each artifact with its hashes, its agreement with the FP32 reference and its latency."""

    def __init__(self, folder: Path, heldout: np.ndarray, options: ExportOptions, reporter, warnings: list[str]):
        from edgecxr.backends import RunnerOptions

        self.folder, self.heldout, self.options, self.reporter, self.warnings = (
            folder, heldout, options, reporter, warnings)
        self.runner_options = RunnerOptions()
        self.artifacts: list[dict] = []
        self.reference = self.fp32_probabilities(heldout)

    def fp32_probabilities(self, inputs: np.ndarray) -> np.ndarray:
        from edgecxr.core.metrics import softmax

        return softmax(self.fp32_logits(inputs))

    def fp32_logits(self, inputs: np.ndarray, batch_size: int = 8) -> np.ndarray:
        from edgecxr.backends import open_runner

        with open_runner("onnxruntime", self.folder / "onnx" / "model.fp32.onnx", self.runner_options) as runner:
            return np.concatenate([runner.infer(inputs[i:i + batch_size]) for i in range(0, len(inputs), batch_size)])

    def add(self, name: str, backend: str, precision: str, files: list[str], role: str, extra: dict | None = None):
        from edgecxr.backends import open_runner
        from edgecxr.exporters import agreement

        record = {"name": name, "backend": backend, "precision": precision, "role": role,
                  "files": [file_entry(self.folder, f) for f in files], **(extra or {})}
        runner = open_runner(backend, self.folder / files[0], self.runner_options)
        record["agreement"] = agreement.compare(self.reference, runner.probabilities(self.heldout, batch_size=8))
        record["latency_ms_batch1"] = agreement.latency_ms(runner, self.heldout[:1])
        runner.close()
        if precision != "fp32" and record["agreement"]["agreement"] < MIN_AGREEMENT:
            self._low_agreement(name, record["agreement"]["agreement"], self.folder / files[0])
        self.artifacts.append(record)

    def _low_agreement(self, name: str, share: float, path: Path) -> None:
        message = (f"{name}: agrees with FP32 on only {100 * share:.1f}% of {len(self.heldout)} held-out images "
                   f"(minimum {100 * MIN_AGREEMENT:.0f}%)")
        if self.options.strict:
            raise EdgecxrError(message, path=path, fix="use more or better calibration images, or drop --strict")
        self.warnings.append(message)
        self.reporter.warn(message)


def _decision_stage(recorder: _Recorder, class_names, options: ExportOptions, run, plan, spec,
                    reporter) -> tuple[dict, dict]:
    """(the decision rule, the probability calibration): the temperature is fitted on the FP32
    graph's validation logits first, and the threshold is then chosen on the calibrated
    probabilities of the same images, which are what every engine decides on."""
    from edgecxr.core.data.folders import samples_fingerprint
    from edgecxr.core.metrics import calibrated_softmax
    from edgecxr.exporters.operating_point import decision_record, decision_samples, fallback_warning
    from edgecxr.exporters.temperature import calibration_record

    chosen = decision_samples(run, plan.heldout, plan.heldout_source)
    samples, split = chosen.samples, chosen.split
    warning = fallback_warning(chosen, options.temperature is None, options.operating_point is not None)
    if warning:
        recorder.warnings.append(warning)
        reporter.warn(warning)
    logits = recorder.fp32_logits(_load_inputs(samples, spec, reporter, f"{split} images: temperature"))
    calibration = calibration_record(logits, np.array([s.label for s in samples]), split,
                                     samples_fingerprint(samples), options.temperature)
    how = "fitted" if options.temperature is None else "given; measured"
    reporter.log(f"temperature {calibration['temperature']:.3f} {how} on {len(samples)} {split} images: "
                 f"ECE (15 bins) {calibration['ece_before']:.4f} -> {calibration['ece_after']:.4f}, "
                 f"NLL {calibration['nll_before']:.4f} -> {calibration['nll_after']:.4f}")
    decision = decision_record(class_names, options, samples, split,
                               calibrated_softmax(logits, calibration["temperature"]))
    reporter.log(f"decision rule: {decision['description']}")
    return decision, calibration


def _onnx_stage(model, spec, folder: Path, heldout: np.ndarray, options: ExportOptions, reporter) -> dict:
    from edgecxr.exporters import onnx_export

    (folder / "onnx").mkdir()
    fp32_onnx = folder / "onnx" / "model.fp32.onnx"
    advance = reporter.task("ONNX export + check", 2)
    info = onnx_export.export_onnx(model, spec, fp32_onnx, opset=options.opset)
    advance(1)
    info["verification"] = onnx_export.verify_against_torch(model, fp32_onnx, heldout[:32])
    advance(1)
    reporter.log(f"ONNX verified: max |logit diff| {info['verification']['max_abs_logit_diff']:.2e} "
                 f"on {info['verification']['images']} real images")
    return info


def _gate_stage(folder: Path, spec, export_info: dict, class_names, decision: dict, temperature: float, run,
                options: ExportOptions, reporter) -> dict | None:
    """The gate's pixel rules and learned stage, fitted on the FP32 graph's own features."""
    if not options.gate:
        reporter.log("intended-use gate: not fitted (--no-gate): only the tag rules will apply")
        return None
    from edgecxr.backends import open_runner
    from edgecxr.core.decision import DecisionRule
    from edgecxr.exporters import gate_fit

    fit, val = gate_fit.gate_images(class_names, options.calib_data, run, options.seed)
    with open_runner("onnxruntime", folder / "onnx" / "model.fp32.onnx") as runner:
        pixels, learned, fitted = gate_fit.fit_gate(runner, spec, export_info["features"], fit, val,
                                                    seed=options.seed, task=reporter.task)
    rule = DecisionRule.from_manifest({"class_names": class_names, "decision": decision})
    validation = gate_fit.validation_record(pixels, learned, fitted, rule, class_names, temperature)
    reporter.log(f"intended-use gate: fitted on {len(fit)} training images, threshold {learned.threshold:.3f} "
                 f"refuses {100 * validation['refusal_rate']:.1f}% of {len(val)} validation images")
    summary = {k: v for k, v in fitted.items() if k not in ("scores", "logits", "stats")}
    return {"pixels": pixels.to_manifest(), "learned": learned.save(folder), "fit": summary,
            "validation": validation}


def _calibration_record(plan) -> dict:
    from edgecxr.exporters.calibration import sample_record

    record = {"source": plan.source, "size": len(plan.candidates[0]), "seeds": plan.seeds,
              "samples": [sample_record(c, plan.root, s) for c, s in zip(plan.candidates, plan.seeds, strict=True)],
              "heldout": {**sample_record(plan.heldout, plan.root, plan.heldout_seed), "what": plan.heldout_source}}
    if plan.selection:
        record["selection"] = {**sample_record(plan.selection, plan.root, plan.selection_seed),
                               "what": plan.selection_source}
    return record


def _plan(class_names, run, options: ExportOptions, warnings: list[str], reporter, report_path: Path | None = None):
    """The image plan, never from the run's test images (refused: exit 2)."""
    from edgecxr.exporters.test_split import refuse_test_images

    plan = _candidates_plan(class_names, run, options, warnings, reporter)
    refuse_test_images(run, options.calib_data, report_path)  # after the plan: a class mismatch is said first
    return plan


def _candidates_plan(class_names, run, options: ExportOptions, warnings: list[str], reporter):
    """With the default number of candidates, a folder too small to choose between them falls back
    to one candidate, with a warning (an explicit --calib-candidates N is kept, or refused)."""
    from edgecxr.exporters.calibration import plan_images

    def plan(candidates: int):
        return plan_images(class_names=class_names, calib_data=options.calib_data, run=run,
                           calib_size=options.calib_size, heldout_size=options.heldout_size, seed=options.seed,
                           need_calibration=options.int8, candidates=candidates)
    if options.calib_candidates is not None:
        return plan(options.calib_candidates)
    try:
        return plan(DEFAULT_CANDIDATES)
    except DataError as exc:
        if "calibration candidates" not in exc.cause:
            raise
        message = (f"too few images to choose between {DEFAULT_CANDIDATES} calibration candidates: one candidate "
                   "used (give more images, a smaller --calib-size or --heldout-size to have a choice)")
        warnings.append(message)
        reporter.warn(message)
        return plan(1)


def _export_into(folder: Path, source_path: Path, options: ExportOptions, targets, reporter) -> ExportResult:
    from edgecxr.exporters.source import resolve_source
    from edgecxr.training.model import checkpoint_sha256, load_checkpoint

    source = resolve_source(source_path)
    model, spec, class_names = load_checkpoint(source.model_dir)
    warnings: list[str] = []
    plan = _plan(class_names, source.run, options, warnings, reporter, source.report_path)
    if len(plan.heldout) < 200:
        warnings.append(f"only {len(plan.heldout)} held-out images for the agreement check (200 recommended)")
    heldout = _load_inputs(plan.heldout, spec, reporter, "held-out images")
    export_info = _onnx_stage(model, spec, folder, heldout, options, reporter)
    recorder = _Recorder(folder, heldout, options, reporter, warnings)
    recorder.add("onnxruntime-fp32", "onnxruntime", "fp32", ["onnx/model.fp32.onnx"], "reference")
    decision, probability_calibration = _decision_stage(recorder, class_names, options, source.run, plan, spec,
                                                        reporter)
    gate = _gate_stage(folder, spec, export_info, class_names, decision, probability_calibration["temperature"],
                       source.run, options, reporter)
    calibration_record = _calibration_record(plan) if options.int8 else None
    from edgecxr.exporters.engines_stage import engines_stage

    engines_stage(folder, plan, options, targets, recorder,
                  lambda samples, label: _load_inputs(samples, spec, reporter, label),
                  positive_class_index(class_names), reporter)
    if "tensorrt" in targets:
        from edgecxr.exporters.tensorrt_if_gpu import build_into_bundle

        recorder.artifacts.extend(build_into_bundle(folder, recorder.artifacts, options, spec, warnings, reporter))

    if source.report_path is not None:
        shutil.copyfile(source.report_path, folder / REFERENCE_REPORT)
        md = source.report_path.with_name("report.md")
        if md.is_file():
            shutil.copyfile(md, folder / "report.md")
    spec.save(folder)
    manifest = {
        "schema": BUNDLE_SCHEMA,
        "name": options.name or (source.model_dir.parent.name if source.model_dir.name == "model"
                                 else source.model_dir.name),
        "created": utc_now(),
        "class_names": class_names,
        "positive_class": class_names[positive_class_index(class_names)],
        "preprocess": spec.to_dict(),
        "input": {"name": "pixel_values", "shape": ["batch", 3, spec.height, spec.width], "dtype": "float32"},
        "output": {"name": "logits", "shape": ["batch", len(class_names)], "dtype": "float32",
                   "meaning": f"logits; softmax(logits / {PROBABILITY_CALIBRATION}.temperature) gives the "
                              "calibrated class probabilities",
                   "features": {"name": "features", "layout": export_info.get("features"),
                                "meaning": "per-stage pooled features, read by the gate's learned stage"}},
        "decision": decision,
        PROBABILITY_CALIBRATION: probability_calibration,
        "intended_use": options.intended_use or IntendedUse().to_manifest(),
        "gate": gate,
        "artifacts": recorder.artifacts,
        "onnx_export": export_info,
        "calibration": calibration_record,
        "source": {"checkpoint": str(source.model_dir), "checkpoint_sha256": checkpoint_sha256(source.model_dir),
                   "run_created": (source.run or {}).get("created"),
                   "reference_report": REFERENCE_REPORT if source.report_path else None},
        "versions": library_versions(),
        "warnings": warnings,
        "files": covered_files(folder, (SPEC_FILENAME, REFERENCE_REPORT, GATE_ARRAYS)),
    }
    manifest["checksum"] = manifest_checksum(manifest)
    atomic_write_json(folder / MANIFEST, manifest)
    return ExportResult(folder, manifest, warnings)
