"""File preparation: read, hash, decode and preprocess one input, never raising for a bad file."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecxr.data.decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, decode_bytes
from edgecxr.data.dicom import PROJECTION_MODALITIES
from edgecxr.data.fingerprint import sha256_bytes
from edgecxr.errors import DecodeError, MissingDependencyError

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
