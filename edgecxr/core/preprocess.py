"""The one preprocessing definition, shared by training, export, parity and the device.

Evaluation transform, as in the seed study: resize to the model's size, scale to [0, 1],
grayscale replicated to three channels, normalise with the base model's mean/std.
It is written in numpy/Pillow so the device runtime needs no torch, and it is stored as
`preprocess.json` beside every checkpoint and in every bundle, so an engine can never be
fed differently from the model it came from.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

SPEC_FILENAME = "preprocess.json"
SPEC_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


# What the transform below does, recorded in every spec so a bundle states it; a spec that
# declares anything else is refused rather than silently fed differently.
_SUPPORTED = {"channels": "gray_to_rgb", "scaling": "dtype_range", "layout": "NCHW", "dtype": "float32"}


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything needed to turn decoded pixels into the model's input tensor."""

    height: int
    width: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    channels: str = "gray_to_rgb"  # grayscale replicated to 3 channels; colour kept as RGB
    scaling: str = "dtype_range"  # 8-bit / 255, 16-bit / 65535, DICOM via its VOI pipeline
    layout: str = "NCHW"
    dtype: str = "float32"
    version: int = field(default=SPEC_VERSION)

    def __post_init__(self):
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"image size must be positive, got {self.height}x{self.width}")
        if self.interpolation not in _RESAMPLE:
            raise ValueError(f"interpolation must be one of {sorted(_RESAMPLE)}, "
                             f"got {self.interpolation!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need three values, std positive")
        for name, supported in _SUPPORTED.items():
            if getattr(self, name) != supported:
                raise ValueError(f"{name} {getattr(self, name)!r} is not supported (this edgecxr does {supported!r})")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.height, self.width)

    # -- the transform --------------------------------------------------------------
    def resize(self, pixels: np.ndarray) -> np.ndarray:
        """(H, W) or (H, W, 3) in [0, 1] -> same layout at the model's size, float32."""
        resample = _RESAMPLE[self.interpolation]
        size = (self.width, self.height)
        if pixels.ndim == 2:
            return _resize_plane(pixels, size, resample)
        return np.stack([_resize_plane(pixels[..., c], size, resample) for c in range(3)], axis=-1)

    def normalize(self, resized: np.ndarray) -> np.ndarray:
        """Resized pixels in [0, 1] -> normalised (3, H, W) float32."""
        chw = np.broadcast_to(resized, (3, *resized.shape)) if resized.ndim == 2 else resized.transpose(2, 0, 1)
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        return np.ascontiguousarray((chw - mean) / std, dtype=np.float32)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return self.normalize(self.resize(pixels))

    def to_image(self, tensor: np.ndarray) -> Image.Image:
        """Undo the normalisation of one (3, H, W) input: what the model saw, as a picture."""
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        unit = np.clip(tensor * std + mean, 0.0, 1.0)
        rgb = (unit.transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8)
        return Image.fromarray(rgb, mode="RGB")

    # -- persistence ----------------------------------------------------------------
    def to_dict(self) -> dict:
        data = asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessSpec:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["mean"] = tuple(float(v) for v in known.get("mean", IMAGENET_MEAN))
        known["std"] = tuple(float(v) for v in known.get("std", IMAGENET_STD))
        return cls(**known)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / SPEC_FILENAME
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder_or_file: str | Path) -> PreprocessSpec:
        path = Path(folder_or_file)
        if path.is_dir():
            path = path / SPEC_FILENAME
        return cls.from_dict(json.loads(path.read_text()))


def load_model_inputs(paths, spec: PreprocessSpec, advance=None) -> np.ndarray:
    """Decode and preprocess files into one (N, 3, H, W) float32 array, as the runtime feeds engines."""
    from edgecxr.core.data.decode import decode_file

    paths = list(paths)
    arrays = np.empty((len(paths), *spec.input_shape), dtype=np.float32)
    for i, path in enumerate(paths):
        arrays[i] = spec(decode_file(path).pixels)
        if advance is not None:
            advance(1)
    return arrays


def _resize_plane(plane: np.ndarray, size: tuple[int, int], resample) -> np.ndarray:
    if plane.shape[1] == size[0] and plane.shape[0] == size[1]:
        return np.asarray(plane, dtype=np.float32)
    img = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F")
    return np.asarray(img.resize(size, resample=resample), dtype=np.float32)
