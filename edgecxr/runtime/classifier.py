"""Decode + preprocess + infer, the steps every runtime command shares."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecxr.backends import RunnerOptions, open_runner
from edgecxr.bundle import Bundle
from edgecxr.data.decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, decode_bytes
from edgecxr.data.dicom import PROJECTION_MODALITIES
from edgecxr.data.fingerprint import sha256_bytes
from edgecxr.errors import DecodeError, MissingDependencyError
from edgecxr.metrics import softmax
from edgecxr.runtime.selection import Choice

MISSING_DEPENDENCY = "missing_dependency"


@dataclass
class InputLimits:
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES
    modalities: tuple[str, ...] = PROJECTION_MODALITIES


@dataclass
class Prepared:
    """One input file, read once: its bytes' hash, the model input or the reason it has none."""

    path: Path
    size: int
    sha256: str
    tensor: np.ndarray | None
    meta: dict = field(default_factory=dict)
    error: DecodeError | None = None
    decode_ms: float = 0.0
    preprocess_ms: float = 0.0


def prepare(path: Path, spec, limits: InputLimits) -> Prepared:
    """Read, hash, decode and preprocess one file; never raises for a bad file."""
    data = b""
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise DecodeError("too_large", f"the file has {size} bytes, over the limit of {limits.max_bytes}",
                              path=path, fix="raise --max-bytes if such files are expected")
        data = path.read_bytes()
    except DecodeError as exc:
        return Prepared(path, size, "", None, error=exc)
    except OSError as exc:
        return Prepared(path, 0, "", None, error=DecodeError("unreadable", str(exc), path=path))
    digest = sha256_bytes(data)
    t0 = time.perf_counter()
    try:
        decoded = decode_bytes(data, str(path), max_pixels=limits.max_pixels, modalities=limits.modalities)
    except DecodeError as exc:
        return Prepared(path, len(data), digest, None, error=exc)
    except MissingDependencyError as exc:  # e.g. a DICOM file on a box without pydicom: not the file's fault
        return Prepared(path, len(data), digest, None, error=DecodeError(MISSING_DEPENDENCY, exc.cause, path=path,
                                                                         fix=exc.fix))
    t1 = time.perf_counter()
    tensor = spec(decoded.pixels)
    t2 = time.perf_counter()
    return Prepared(path, len(data), digest, tensor, decoded.meta, None, 1000 * (t1 - t0), 1000 * (t2 - t1))


class Classifier:
    """A bundle's chosen engine plus its decision rule."""

    def __init__(self, bundle: Bundle, choice: Choice, options: RunnerOptions | None = None):
        self.bundle = bundle
        self.choice = choice
        self.artifact = choice.artifact
        self.runner = open_runner(self.artifact.backend, self.artifact.path, options or RunnerOptions())
        self.class_names = bundle.class_names
        self.decision = bundle.manifest.get("decision", {"rule": "argmax"})

    @property
    def engine_label(self) -> str:
        return f"{self.artifact.backend}/{self.artifact.precision}"

    def probabilities(self, batch: np.ndarray) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        probs = softmax(self.runner.infer(batch))
        return probs, 1000 * (time.perf_counter() - t0)

    def label(self, probs: np.ndarray) -> str:
        if self.decision.get("rule") == "threshold":
            cls = self.decision["class"]
            others = [n for n in self.class_names if n != cls]
            p = probs[self.class_names.index(cls)]
            return cls if p >= float(self.decision["threshold"]) else others[int(np.argmax(
                [probs[self.class_names.index(o)] for o in others]))]
        return self.class_names[int(np.argmax(probs))]

    def close(self) -> None:
        self.runner.close()
