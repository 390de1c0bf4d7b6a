"""File preparation: read, hash, decode and preprocess one input, never raising for a bad file."""

from __future__ import annotations

import os
import stat
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecxr.core.data.decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, decode_bytes
from edgecxr.core.data.dicom import PROJECTION_MODALITIES
from edgecxr.core.data.fingerprint import sha256_bytes
from edgecxr.core.errors import DecodeError, MissingDependencyError
from edgecxr.scope.intended_use import IntendedUse
from edgecxr.scope.verdict import Flag, GateRefused, Refusal

MISSING_DEPENDENCY = "missing_dependency"
INTERNAL_ERROR = "internal_error"


@dataclass
class InputLimits:
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES
    modalities: tuple[str, ...] = PROJECTION_MODALITIES
    intended_use: IntendedUse | None = None  # the gate's tags stage: the bundle's, with the command line's overrides


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
    traceback: str | None = None  # for internal_error: what the log needs to fix the bug
    refusal: Refusal | None = None  # the gate's tags or pixels stage refused it: it never reaches the engine
    flags: list[Flag] = field(default_factory=list)  # e.g. an age outside the population: shown with the result


def prepare(path: Path, spec, limits: InputLimits, gate=None) -> Prepared:
    """Read, hash, decode and preprocess one file; never raises.

    With a `gate` (edgecxr.scope.gate.Gate), its tags stage sees a DICOM header before any
    pixel is decoded and its pixel stage sees the decoded picture before preprocessing; a
    refusal by either is kept in `refusal` (no tensor), for an `out_of_scope` line.

    This is the one boundary between a file and the loop: a bad file, or a library's surprise
    on it, becomes a refusal for that file, so no input can stop a watcher that must run for
    months. Unexpected exception types are refused as `internal_error` with their traceback
    kept for the log.
    """
    item = Prepared(path, 0, "", None)
    try:
        data = _read(path, limits)
        item.size, item.sha256 = len(data), sha256_bytes(data)
        t0 = time.perf_counter()
        screen = gate.screen() if gate is not None else None
        modalities = None if screen is not None else limits.modalities  # the tags stage decides instead
        decoded = decode_bytes(data, str(path), max_pixels=limits.max_pixels, modalities=modalities, screen=screen)
        item.meta, item.flags = decoded.meta, list(screen.flags) if screen is not None else []
        item.refusal = gate.check_pixels(decoded.pixels) if gate is not None else None
        if item.refusal is not None:
            item.decode_ms = 1000 * (time.perf_counter() - t0)
            return item
        t1 = time.perf_counter()
        tensor = spec(decoded.pixels)
        if not np.isfinite(tensor).all():
            raise DecodeError("bad_pixels", "the image has values that are not finite numbers (NaN or inf)",
                              path=path, fix="check the rescale and window attributes the modality wrote")
        item.tensor, item.meta = tensor, decoded.meta
        item.decode_ms, item.preprocess_ms = 1000 * (t1 - t0), 1000 * (time.perf_counter() - t1)
    except GateRefused as exc:  # the tags stage: the header says this is not what the model reads
        item.refusal = exc.refusal
    except DecodeError as exc:
        item.error = exc
    except MissingDependencyError as exc:  # e.g. a DICOM file on a box without pydicom: not the file's fault
        item.error = DecodeError(MISSING_DEPENDENCY, exc.cause, path=path, fix=exc.fix)
    except Exception as exc:  # the boundary: whatever a decoder raises on a hostile file stays with that file
        item.error = DecodeError(INTERNAL_ERROR, f"unexpected {type(exc).__name__} while reading it: {exc}",
                                 path=path, fix="the file was refused and the watcher went on; please report "
                                                "the traceback in the log with the file")
        item.traceback = traceback.format_exc()
    return item


def _read(path: Path, limits: InputLimits) -> bytes:
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a folder, or a FIFO a read would block on forever
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a pipe, socket or device)"
            raise DecodeError("not_a_file", f"this is {kind}, not an image file", path=path,
                              fix="give image files, or watch a folder with `edgecxr watch`")
        if st.st_size > limits.max_bytes:
            raise _too_many_bytes(path, st.st_size, limits)
        # O_NONBLOCK: a FIFO swapped in since the stat must not block the open; fstat checks what opened
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise DecodeError("not_a_file", "this is not a regular file (a pipe, socket or device)",
                                  path=path, fix="give image files, or watch a folder with `edgecxr watch`")
            data = handle.read(limits.max_bytes + 1)  # it may have grown since the stat
        if len(data) > limits.max_bytes:
            raise _too_many_bytes(path, len(data), limits)
        return data
    except FileNotFoundError as exc:
        raise DecodeError("not_found", "no such file", path=path, fix="check the path") from exc
    except OSError as exc:
        raise DecodeError("unreadable", f"the file cannot be read ({exc.strerror or exc})", path=path,
                          fix="check its permissions and the file system it is on") from exc


def _too_many_bytes(path: Path, size: int, limits: InputLimits) -> DecodeError:
    return DecodeError("too_large", f"the file has {size} bytes, over the limit of {limits.max_bytes}",
                       path=path, fix="raise --max-bytes if such files are expected")
