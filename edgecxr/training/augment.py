"""Training-time augmentation on top of the shared preprocessing.

The evaluation path is exactly `PreprocessSpec.__call__`; augmentation only inserts
random geometry and intensity changes between its resize and its normalisation (random
resized crop before the resize), as the seed study's torchvision pipeline did. Every
random draw comes from a generator seeded by (seed, epoch, index), so an epoch is the
same whatever the number of data-loader workers, and a resumed run sees the same images.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from edgecxr.core.preprocess import PreprocessSpec
from edgecxr.training.config import Augmentation


def augment(pixels: np.ndarray, spec: PreprocessSpec, cfg: Augmentation,
            rng: np.random.Generator) -> np.ndarray:
    if cfg.crop_scale is not None:
        pixels = random_resized_crop(pixels, cfg.crop_scale, rng)
    img = spec.resize(pixels)
    if cfg.hflip > 0 and rng.random() < cfg.hflip:
        img = img[:, ::-1]
    if cfg.rotate_degrees > 0:
        img = rotate(img, float(rng.uniform(-cfg.rotate_degrees, cfg.rotate_degrees)))
    if cfg.brightness > 0 or cfg.contrast > 0:
        gain = 1.0 + float(rng.uniform(-cfg.contrast, cfg.contrast))
        shift = float(rng.uniform(-cfg.brightness, cfg.brightness))
        mean = float(img.mean())
        img = np.clip((img - mean) * gain + mean + shift, 0.0, 1.0)
    return spec.normalize(np.ascontiguousarray(img, dtype=np.float32))


def rotate(img: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate about the centre, same size, bilinear, black fill (torchvision's fill=0)."""
    def plane(p):
        pil = Image.fromarray(np.ascontiguousarray(p, dtype=np.float32), mode="F")
        return np.asarray(pil.rotate(degrees, resample=Image.Resampling.BILINEAR, fillcolor=0.0))
    if img.ndim == 2:
        return plane(img)
    return np.stack([plane(img[..., c]) for c in range(img.shape[2])], axis=-1)


def random_resized_crop(pixels: np.ndarray, scale: tuple[float, float],
                        rng: np.random.Generator, ratio=(3 / 4, 4 / 3)) -> np.ndarray:
    """A crop of random area fraction and aspect ratio (Inception-style); whole image fallback."""
    height, width = pixels.shape[:2]
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return pixels[top:top + h, left:left + w]
    return pixels
