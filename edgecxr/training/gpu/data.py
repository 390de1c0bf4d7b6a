"""A split decoded once into one uint8 tensor, and its normalisation on the device.

Each file is read once: its bytes are hashed (the split's fingerprint, as `hash_and_check`
gives) and decoded by `edgecxr.core.data.decode`, resized by `PreprocessSpec.resize` (the
one preprocessing definition) and stored as 8 bits. The only difference from the float
path the runtime feeds is that rounding, at most half a grey level (0.5 / 255) before
normalisation. Grayscale stays one channel (3x less memory) and is replicated to three
channels by `normalize`, as `PreprocessSpec.normalize` does; a split with any colour image
is stored as RGB with its grayscale images replicated.

Kermany's 5,216 training images at 256 px take 342 MB as one channel: decoding them is
the only per-image work of a run, done on the CPU's cores, once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from edgecxr.core.data.decode import decode_bytes
from edgecxr.core.data.fingerprint import sha256_bytes
from edgecxr.core.data.folders import Sample
from edgecxr.core.errors import DataError, DecodeError
from edgecxr.core.preprocess import PreprocessSpec


@dataclass
class ImageTensor:
    """(N, C, H, W) uint8 pixels, C = 1 (grayscale) or 3, with their labels."""

    pixels: torch.Tensor
    labels: torch.Tensor  # (N,) int64
    samples: list[Sample]

    def to(self, device) -> ImageTensor:
        return ImageTensor(self.pixels.to(device), self.labels.to(device), self.samples)

    def __len__(self) -> int:
        return len(self.samples)


def quantize(resized: np.ndarray) -> np.ndarray:
    """Resized pixels in [0, 1] -> uint8 (H, W) or (H, W, 3), rounded to the nearest level."""
    return np.clip(np.rint(resized * 255.0), 0, 255).astype(np.uint8)


def decode_split(samples: Sequence[Sample], spec: PreprocessSpec, *, workers: int | None = None,
                 on_progress: Callable[[int], None] | None = None) -> ImageTensor:
    """Read, hash, decode and resize every sample once (threads: Pillow releases the GIL).

    Fills `Sample.sha256`. An unreadable image stops the run with all of them listed: the
    GPU recipe has no --skip-bad; `edgecxr train --skip-bad` is the way around a bad file.
    """
    def load(sample: Sample):
        try:
            data = sample.path.read_bytes()
            digest = sha256_bytes(data)
            pixels = decode_bytes(data, str(sample.path)).pixels
        except OSError as exc:
            return sample, None, None, str(exc)
        except DecodeError as exc:
            return sample, None, None, exc.cause
        return sample, digest, quantize(spec.resize(pixels)), None

    images: list[np.ndarray] = []
    bad: list[str] = []
    workers = workers or min(16, os.cpu_count() or 2)
    with ThreadPoolExecutor(workers) as pool:
        for sample, digest, image, error in pool.map(load, samples):
            if error is not None:
                bad.append(f"{sample.path} ({error})")
            else:
                sample.sha256 = digest
                images.append(image)
            if on_progress:
                on_progress(1)
    if bad:
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise DataError(f"{len(bad)} unreadable image(s): {'; '.join(bad[:10])}{more}",
                        fix="remove or replace them (or train with `edgecxr train --skip-bad`)")
    return ImageTensor(_stack(images, spec), torch.tensor([s.label for s in samples], dtype=torch.int64),
                       list(samples))


def _stack(images: list[np.ndarray], spec: PreprocessSpec) -> torch.Tensor:
    colour = any(image.ndim == 3 for image in images)
    out = np.empty((len(images), 3 if colour else 1, spec.height, spec.width), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = image.transpose(2, 0, 1) if image.ndim == 3 else image[None]
    return torch.from_numpy(out)


def to_unit(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 in [0, 1] on the same device."""
    return pixels.float().div_(255.0)


def normalize(unit: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    """[0, 1] (B, 1 or 3, H, W) -> the model's input: three channels, the recorded mean/std."""
    if unit.shape[1] == 1:
        unit = unit.expand(-1, 3, -1, -1)
    mean = torch.tensor(spec.mean, dtype=unit.dtype, device=unit.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=unit.dtype, device=unit.device).view(1, 3, 1, 1)
    return (unit - mean) / std
