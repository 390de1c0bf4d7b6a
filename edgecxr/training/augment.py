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
    return spec.normalize(np.ascontiguousarray(scanner_effects(img, cfg, rng), dtype=np.float32))


def scanner_effects(img: np.ndarray, cfg: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """Gamma, blur, noise and JPEG re-compression, in the order an image meets them (processing,
    the detector's sharpness, its noise, storage). An effect at 0 draws nothing from `rng`."""
    if cfg.gamma > 0:
        img = np.power(np.clip(img, 0.0, 1.0), math.exp(rng.uniform(-cfg.gamma, cfg.gamma)))
    if cfg.blur_p > 0 and rng.random() < cfg.blur_p:
        img = gaussian_blur(img, float(rng.uniform(0.2, cfg.blur_sigma)))
    if cfg.noise_p > 0 and rng.random() < cfg.noise_p:
        std = float(rng.uniform(0.0, cfg.noise_std))
        img = np.clip(img + rng.normal(0.0, std, img.shape[:2])[(...,) + (None,) * (img.ndim - 2)], 0.0, 1.0)
    if cfg.jpeg_p > 0 and rng.random() < cfg.jpeg_p:
        img = jpeg_roundtrip(img, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
    return img


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur, kernel radius 3 sigma, edges repeated (the grey level at the border)."""
    radius = max(1, math.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    out = np.asarray(img, dtype=np.float32)
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        out = sum(kernel[k] * np.take(padded, range(k, k + out.shape[axis]), axis=axis)
                  for k in range(len(kernel)))
    return out


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode as an 8-bit JPEG at `quality` and decode: the blocks and ringing of a lossy archive."""
    import io

    if img.ndim == 3 and float(np.ptp(img, axis=2).max()) == 0.0:  # grey in three channels: stored as grey
        return np.repeat(jpeg_roundtrip(img[..., 0], quality)[..., None], img.shape[2], axis=2)
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer), dtype=np.float32) / 255.0


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
