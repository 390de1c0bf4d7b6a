"""Parity of INT8 engines on a CPU class this machine is not: AVX2 without VNNI, emulated.

ONNX Runtime picks its MLAS kernels from CPUID and ignores ISA caps, so the only way to see
what an AVX2-only box computes is to run the engine under `qemu-x86_64 -cpu Haswell`, where
CPUID hides VNNI, AVX-512 and AMX from the whole process. Emulation costs about 100×, so
everything that does not depend on the CPU class (decoding, preprocessing, the FP32
reference) runs natively, once; the emulated worker (`emulated_worker`) only loads engines
through edgecxr's runners and scores the saved inputs. OpenVINO honours
`ONEDNN_MAX_CPU_ISA`, so its engines can be cross-checked natively under that cap instead.
Torch-free.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecxr.backends import RunnerOptions, open_runner
from edgecxr.core.bundle import Artifact, Bundle
from edgecxr.core.data.folders import scan_split
from edgecxr.core.decision import DecisionRule
from edgecxr.core.errors import EdgecxrError
from edgecxr.core.metrics import calibrated_softmax
from edgecxr.core.preprocess import load_model_inputs
from edgecxr.parity.emulated_worker import REFUSED

PICKS = ("stratified", "boundary")
_NOISE = ("TCG doesn't support requested feature",)  # qemu's notes on features it cannot emulate


@dataclass
class Prepared:
    """The test images as every engine sees them, and the native FP32 reference logits."""

    rels: list[str]
    labels: np.ndarray
    inputs: np.ndarray
    reference: np.ndarray
    total: int  # images in the test folder, before --limit
    how: str  # which images: "all", or the subset rule
    left_out_margin: float | None = None  # boundary pick: the smallest FP32 |P(positive) - threshold| left out
    temperature: float = 1.0  # the bundle's: every probability here is calibrated as the runtime's is


@dataclass
class Where:
    """A CPU class to run engines on: a qemu CPU model, or this CPU with an ISA cap."""

    label: str
    prefix: list[str] = field(default_factory=list)  # ["qemu-x86_64", "-cpu", "Haswell"] or []
    env: dict = field(default_factory=dict)
    require_no_vnni: bool = False


def emulated(cpu_model: str, qemu: str = "qemu-x86_64") -> Where:
    found = shutil.which(qemu)
    if found is None:
        raise EdgecxrError(f"{qemu} is not installed: it emulates the CPU class this machine is not",
                           fix="apt-get install qemu-user (Debian/Ubuntu), or run on a real AVX2-only box")
    return Where(f"{cpu_model} (qemu)", [found, "-cpu", cpu_model], require_no_vnni=True)


def isa_capped(isa: str) -> Where:
    return Where(f"this CPU, ONEDNN_MAX_CPU_ISA={isa}", env={"ONEDNN_MAX_CPU_ISA": isa})


def pick(labels: np.ndarray, limit: int | None, seed: int, how: str, p_positive: np.ndarray | None,
         cut: float = 0.5) -> np.ndarray:
    """Indices of the images to score: all, a seeded class-stratified sample, or the `limit`
    whose FP32 P(positive) lies nearest the decision threshold (where flips happen), nearest
    first, so that a run stopped by its time budget has scored the most telling ones."""
    if limit is None or limit >= len(labels):
        return np.arange(len(labels))
    if how == "boundary":
        if p_positive is None:
            raise ValueError("the boundary pick needs the FP32 probabilities of every image")
        return np.argsort(np.abs(p_positive - cut), kind="stable")[:limit]  # nearest first
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    counts = {c: max(1, round(limit * int((labels == c).sum()) / len(labels))) for c in classes}
    while sum(counts.values()) > limit:
        counts[max(counts, key=lambda c: counts[c])] -= 1
    chosen = [rng.choice(np.flatnonzero(labels == c), size=counts[c], replace=False) for c in classes]
    return np.sort(np.concatenate(chosen))


def prepare(bundle: Bundle, data: Path, limit: int | None, seed: int, how: str,
            progress: Callable[[str], None]) -> Prepared:
    """Decode, preprocess and score FP32 natively, once: on every image for the boundary pick,
    else only on the chosen ones."""
    split = scan_split(data, classes=bundle.class_names)
    labels = np.array([s.label for s in split.samples])
    reference = bundle.find(role="reference") or bundle.find(backend="onnxruntime", precision="fp32")
    if not reference:
        raise EdgecxrError("the bundle has no ONNX FP32 reference engine", path=bundle.folder,
                           fix="export the bundle with its onnxruntime-fp32 artifact")
    rule = DecisionRule.from_manifest(bundle.manifest)
    chosen = np.arange(len(labels)) if how == "boundary" else pick(labels, limit, seed, how, None)
    progress(f"decoding and preprocessing {len(chosen)} images natively")
    inputs = load_model_inputs([split.samples[i].path for i in chosen], bundle.spec)
    progress(f"FP32 reference ({reference[0].name}) natively on {len(chosen)} images")
    logits = native_logits(reference[0], inputs)
    margin = None
    if how == "boundary":
        p = calibrated_softmax(logits, bundle.temperature)[:, rule.positive_index]
        cut = rule.threshold if rule.threshold is not None else 0.5
        keep = pick(labels, limit, seed, how, p, cut)
        left_out = np.setdiff1d(np.arange(len(p)), keep)
        margin = float(np.abs(p[left_out] - cut).min()) if len(left_out) else None
        chosen, inputs, logits = chosen[keep], inputs[keep], logits[keep]
    label = "all" if len(chosen) == len(labels) else (
        f"{how} subset, seed {seed}" if how == "stratified" else "boundary subset: nearest the decision threshold")
    return Prepared([split.samples[i].rel for i in chosen], labels[chosen], inputs, logits, len(labels), label, margin,
                    bundle.temperature)


def native_logits(artifact: Artifact, inputs: np.ndarray, batch: int = 16) -> np.ndarray:
    with open_runner(artifact.backend, artifact.path, RunnerOptions()) as runner:
        return np.concatenate([runner.infer(inputs[i:i + batch]) for i in range(0, len(inputs), batch)])


def run_worker(where: Where, engines: list[Artifact], inputs: Path, out: Path, *, batch: int = 8,
               threads: int | None = 1, progress: Callable[[str], None] = print,
               timeout: float | None = None, minutes: float | None = None) -> tuple[dict, dict]:
    """Score `inputs` with `engines` in a worker on `where`; returns (logits by engine, meta).
    With `minutes`, each engine scores only the first inputs it reaches in that time."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, **where.env,
           "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
    cmd = [*where.prefix, sys.executable, "-m", "edgecxr.parity.emulated_worker", str(inputs), str(out),
           "--batch", str(batch), *(["--threads", str(threads)] if threads else []),
           *(["--minutes", str(minutes)] if minutes else []),
           *(["--require-no-vnni"] if where.require_no_vnni else []),
           *[f"--engine={a.name}={a.backend}:{a.path}" for a in engines]]
    errors: list[str] = []
    with subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc:
        timer = threading.Timer(timeout, proc.kill) if timeout else None
        if timer is not None:
            timer.start()
        for line in proc.stderr or ():
            line = line.rstrip()
            if line.startswith("progress "):
                progress(f"{where.label}: {line[len('progress '):]}")
            elif line and not any(n in line for n in _NOISE):
                errors.append(line)
        status = proc.wait()
        if timer is not None:
            timer.cancel()
            if not timer.is_alive() and status < 0:
                errors.append(f"killed after the {timeout:g} s limit")
    if status == REFUSED:
        raise EdgecxrError(f"the worker on {where.label} refused to report: {' '.join(errors[-2:])}",
                           fix="use a qemu CPU model without VNNI/AMX (e.g. Haswell), or a qemu whose TCG "
                           "cannot emulate them")
    if status != 0:
        raise EdgecxrError(f"the worker on {where.label} failed (exit {status}): {' '.join(errors[-5:])}",
                           fix="run the worker command by hand to see the whole error: " + " ".join(cmd))
    with np.load(out) as saved:
        meta = json.loads(str(saved["meta"]))
        return {a.name: saved[a.name] for a in engines}, meta


def summarize(prepared: Prepared, logits: np.ndarray, rule: DecisionRule, native: np.ndarray | None = None) -> dict:
    """One engine on the other CPU class against the native FP32 reference on the same images,
    under the bundle's decision rule; and against the same engine run natively, if given."""
    n = len(logits)
    t = prepared.temperature
    ref_probs, probs = calibrated_softmax(prepared.reference[:n], t), calibrated_softmax(logits, t)
    ref_out, out = rule.decide(ref_probs), rule.decide(probs)
    truth = prepared.labels[:n]
    pos = rule.positive_index
    flips = [{"path": prepared.rels[i], "fp32": rule.name(int(ref_out[i])), "engine": rule.name(int(out[i])),
              "p_fp32": float(ref_probs[i, pos]), "p_engine": float(probs[i, pos])}
             for i in np.flatnonzero(ref_out != out)]
    summary = {"images": n, "agreement": float((ref_out == out).mean()), "flips": flips,
               "accuracy": float((rule.predict(probs) == truth).mean()),
               "accuracy_fp32": float((rule.predict(ref_probs) == truth).mean()),
               "max_abs_p_diff": float(np.abs(probs[:, pos] - ref_probs[:, pos]).max())}
    if native is not None:
        summary["vs_native"] = {"changes": int((rule.decide(calibrated_softmax(native[:n], t)) != out).sum()),
                                "max_abs_logit_diff": float(np.abs(native[:n] - logits).max())}
    return summary
