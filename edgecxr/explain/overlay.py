"""The map as a picture: the model's input in grey with the falls in P(label) laid over it.

The colour scale is fixed (transparent at 0, full yellow at SCALE_POINTS points), never
stretched per image, so two overlays can be compared by eye and a weak map looks weak.
Regions whose covering raised P(label) are left uncoloured: the map shows support only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SCALE_POINTS = 30  # a fall of 30 points of probability (0.30) or more is drawn at full strength
MIN_SIDE = 256  # small models' inputs are enlarged so a person can see the squares
BAR = 14  # height of the colour-scale strip under the image


def colours(heat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) falls -> (H, W, 3) colour and (H, W) opacity on the fixed scale: red for small, yellow for large."""
    t = np.clip(heat / (SCALE_POINTS / 100), 0.0, 1.0)
    rgb = np.stack([np.full_like(t, 255.0), 255.0 * t, np.zeros_like(t)], axis=-1)
    return rgb, 0.7 * np.sqrt(t)


def overlay(base: Image.Image, heat: np.ndarray) -> Image.Image:
    """`base`: the model input as RGB at the heat map's size. Returns the blended picture with its scale strip."""
    side = max(MIN_SIDE, base.width)
    size = (side, round(side * base.height / base.width))
    grey = np.asarray(base.convert("L").convert("RGB").resize(size, Image.Resampling.BILINEAR), np.float32)
    big = np.asarray(Image.fromarray(heat.astype(np.float32), mode="F").resize(size, Image.Resampling.BILINEAR))
    rgb, alpha = colours(big)
    blended = grey * (1 - alpha[..., None]) + rgb * alpha[..., None]
    canvas = Image.new("RGB", (size[0], size[1] + BAR), (0, 0, 0))
    canvas.paste(Image.fromarray(blended.round().astype(np.uint8), mode="RGB"), (0, 0))
    ramp = np.linspace(0, SCALE_POINTS / 100, size[0] // 2, dtype=np.float32)[None].repeat(BAR - 4, axis=0)
    ramp_rgb, ramp_alpha = colours(ramp)
    strip = ramp_rgb * ramp_alpha[..., None] + 128 * (1 - ramp_alpha[..., None])
    canvas.paste(Image.fromarray(strip.round().astype(np.uint8), mode="RGB"), (size[0] // 4, size[1] + 2))
    draw = ImageDraw.Draw(canvas)
    draw.text((2, size[1] + 1), "0", fill=(255, 255, 255))
    draw.text((size[0] * 3 // 4 + 3, size[1] + 1), f"-{SCALE_POINTS} pts", fill=(255, 255, 255))
    return canvas


def save_overlay(base: Image.Image, heat: np.ndarray, path: Path) -> Path:
    """Write the PNG beside its final name, then rename: a reader never sees half a picture."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    overlay(base, heat).save(tmp, format="PNG")
    tmp.replace(path)
    return path
