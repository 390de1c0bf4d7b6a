"""Augmentation of a whole batch on the device, aimed at how scanners and exposures differ.

Geometry is one affine warp per image (random resized crop, small rotation, horizontal
flip) applied to the batch by a single `grid_sample`, black fill as the CPU path's
rotation. Intensity changes work on [0, 1] pixels before normalisation: gamma, contrast
and brightness, a Gaussian blur of random width and additive noise, each image with its
own draw. No per-image Python loop; JPEG re-compression has no vectorised form and is
left out.

The per-image parameters are drawn from a CPU `torch.Generator` (a few numbers per
image), so a seed gives the same crops, angles and gammas on any device; only the noise
field is drawn on the device, from a generator seeded by the CPU one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class DeviceAugment:
    hflip: float = 0.5  # probability
    crop_scale: tuple[float, float] = (0.7, 1.0)  # area fraction of the stored image
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect ratio range, log-uniform
    rotate_degrees: float = 10.0  # uniform in +-
    gamma: float = 0.25  # exponent exp(U(-g, g)): about 0.78 to 1.28
    contrast: float = 0.2  # gain 1 + U(-c, c) about the image mean
    brightness: float = 0.1  # shift U(-b, b)
    blur_p: float = 0.2  # probability of a Gaussian blur ...
    blur_sigma: float = 1.5  # ... with sigma U(0.1, this) pixels
    noise_p: float = 0.2  # probability of additive Gaussian noise ...
    noise_std: float = 0.03  # ... with std U(0, this)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        data = asdict(self)
        data["crop_scale"], data["crop_ratio"] = list(self.crop_scale), list(self.crop_ratio)
        return data


def augment_batch(unit: torch.Tensor, cfg: DeviceAugment, generator: torch.Generator) -> torch.Tensor:
    """[0, 1] float (B, C, H, W) -> the same shape and dtype, augmented, in [0, 1]."""
    batch = unit.shape[0]
    draw = _Draws(batch, generator)
    out = _warp(unit, cfg, draw)
    out = _intensity(out, cfg, draw)
    if cfg.blur_p > 0 and cfg.blur_sigma > 0:
        out = _blur(out, cfg, draw)
    if cfg.noise_p > 0 and cfg.noise_std > 0:
        device_gen = torch.Generator(device=out.device)
        device_gen.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        on = (draw.uniform() < cfg.noise_p).float() * draw.uniform(0.0, cfg.noise_std)
        noise = torch.randn(out.shape, generator=device_gen, device=out.device, dtype=out.dtype)
        out = out + noise * on.to(out.device, out.dtype).view(-1, 1, 1, 1)
    return out.clamp_(0.0, 1.0)


class _Draws:
    """(B,) uniform draws from the CPU generator, in a fixed order per batch."""

    def __init__(self, batch: int, generator: torch.Generator):
        self.batch, self.generator = batch, generator

    def uniform(self, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        return low + (high - low) * torch.rand(self.batch, generator=self.generator, dtype=torch.float64)


def affine_matrices(cfg: DeviceAugment, draw: _Draws, height: int, width: int) -> torch.Tensor:
    """(B, 2, 3) maps from output to input coordinates in `affine_grid`'s [-1, 1] units.

    input = centre + S^-1 R(angle) S diag(flip * w, h) output, where w, h are the crop's
    width and height as fractions of the image, and S scales to pixels so the rotation is
    a rotation of the picture, not of the unit square, when H != W.
    """
    area = draw.uniform(*cfg.crop_scale)
    log_ratio = draw.uniform(math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1]))
    aspect = torch.exp(log_ratio)
    w = torch.sqrt(area * aspect).clamp(max=1.0)
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (2 * draw.uniform() - 1) * (1 - w)
    cy = (2 * draw.uniform() - 1) * (1 - h)
    angle = torch.deg2rad(draw.uniform(-cfg.rotate_degrees, cfg.rotate_degrees))
    flip = torch.where(draw.uniform() < cfg.hflip, -1.0, 1.0).to(torch.float64)
    cos, sin = torch.cos(angle), torch.sin(angle)
    half_w, half_h = width / 2, height / 2
    theta = torch.zeros(draw.batch, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = cos * flip * w
    theta[:, 0, 1] = -sin * h * half_h / half_w
    theta[:, 1, 0] = sin * flip * w * half_w / half_h
    theta[:, 1, 1] = cos * h
    theta[:, 0, 2], theta[:, 1, 2] = cx, cy
    return theta


def _warp(unit: torch.Tensor, cfg: DeviceAugment, draw: _Draws) -> torch.Tensor:
    batch, channels, height, width = unit.shape
    theta = affine_matrices(cfg, draw, height, width).to(unit.device, unit.dtype)
    grid = F.affine_grid(theta, [batch, channels, height, width], align_corners=False)
    return F.grid_sample(unit, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _intensity(unit: torch.Tensor, cfg: DeviceAugment, draw: _Draws) -> torch.Tensor:
    def column(values: torch.Tensor) -> torch.Tensor:
        return values.to(unit.device, unit.dtype).view(-1, 1, 1, 1)

    gamma = column(torch.exp(draw.uniform(-cfg.gamma, cfg.gamma)))
    gain = column(1 + draw.uniform(-cfg.contrast, cfg.contrast))
    shift = column(draw.uniform(-cfg.brightness, cfg.brightness))
    out = unit.clamp(min=1e-6).pow(gamma)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return ((out - mean) * gain + mean + shift).clamp_(0.0, 1.0)


def _blur(unit: torch.Tensor, cfg: DeviceAugment, draw: _Draws) -> torch.Tensor:
    """Separable Gaussian, each image its own sigma, as one grouped convolution per axis."""
    batch, channels, height, width = unit.shape
    on = draw.uniform() < cfg.blur_p
    sigma = draw.uniform(0.1, cfg.blur_sigma)
    radius = max(1, math.ceil(3 * cfg.blur_sigma))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (taps[None, :] / sigma[:, None]) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    identity = (taps == 0).to(torch.float64).expand(batch, -1)
    kernel = torch.where(on[:, None], kernel, identity)  # unblurred images pass unchanged
    kernel = kernel.repeat_interleave(channels, dim=0).to(unit.device, unit.dtype)
    planes = unit.reshape(1, batch * channels, height, width)
    planes = F.pad(planes, (radius, radius, radius, radius), mode="reflect")
    planes = F.conv2d(planes, kernel.view(-1, 1, 1, 2 * radius + 1), groups=batch * channels)
    planes = F.conv2d(planes, kernel.view(-1, 1, 2 * radius + 1, 1), groups=batch * channels)
    return planes.view(batch, channels, height, width)
