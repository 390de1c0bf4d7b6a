"""Training settings: defaults, then the preset's recipe, then a config file, then flags.

The resolved settings are written to `run.json`; `--resume` refuses to continue a run
whose recorded settings differ from the resolved ones, so a resumed run is always the
run that was started.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (JetPack 6): the same parser, from the [train] extra
    import tomli as tomllib

from edgecxr.core.data.folders import VAL_SPLITS
from edgecxr.core.defaults import DEFAULT_SEED
from edgecxr.core.errors import EdgecxrError
from edgecxr.training.presets import PRESETS


@dataclass
class Augmentation:
    """Training-only augmentation; the seed study used flip and rotation up to 15 degrees."""

    hflip: float = 0.5  # probability
    rotate_degrees: float = 15.0
    crop_scale: tuple[float, float] | None = None  # random resized crop, area fraction range
    brightness: float = 0.0  # +- fraction
    contrast: float = 0.0  # +- fraction
    # How scanners and their processing differ (issue 21); each off at 0, and an option left off
    # draws nothing, so the recipes written before these existed see the same images.
    gamma: float = 0.0  # pixel ** exp(U(-g, g)): 0.25 gives exponents 0.78-1.28
    blur_p: float = 0.0  # probability of a Gaussian blur of sigma U(0.2, blur_sigma) pixels
    blur_sigma: float = 1.5
    noise_p: float = 0.0  # probability of additive Gaussian noise of std U(0, noise_std)
    noise_std: float = 0.03
    jpeg_p: float = 0.0  # probability of a JPEG re-compression at a quality in jpeg_quality
    jpeg_quality: tuple[int, int] = (30, 90)


@dataclass
class TrainConfig:
    data: str
    out: str
    base: str | None = None
    arch: str | None = None
    init: str | None = None  # encoder from `edgecxr pretrain` (RUN/model), with --arch
    # The seed study's fine-tuning: epochs, lr, batch_size, weight_decay and seed.
    epochs: int = 15
    lr: float = 2e-5
    batch_size: int = 32
    weight_decay: float = 0.01
    seed: int = DEFAULT_SEED
    # the validation split's own seed (None = `seed`): several seeds of a recipe, or several
    # recipes, are then chosen between on the same validation images
    split_seed: int | None = None
    # how validation is carved from train/ (no val/ folder): "random" patients (seeded by split_seed)
    # or "lowest-numbered", the patients numbered nearest the official test split's (no seed)
    val_split: str = "random"
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    label_smoothing: float = 0.0
    val_fraction: float = 0.1
    class_weights: str = "auto"
    early_stopping: int = 0  # patience in epochs, 0 = off
    layer_decay: float = 1.0  # lr × decay^(layers above); 1.0 = the same lr everywhere
    ema_decay: float = 0.0  # validate and save an exponential moving average of the weights; 0 = off
    device: str = "auto"
    precision: str = "auto"
    workers: int = -1  # -1 = choose for this machine
    eval_batch_size: int = 64
    skip_bad: bool = False
    # False (--no-test): test/ is never opened, so the temperature and threshold that export chooses
    # on validation are frozen before any test image is read; `edgecxr evaluate` scores it afterwards
    evaluate_test: bool = True
    augment: Augmentation = field(default_factory=Augmentation)

    # Settings that may change on --resume without changing the run's result.
    RESUMABLE = ("out", "data", "device", "workers", "eval_batch_size", "evaluate_test")

    def to_dict(self) -> dict:
        data = asdict(self)
        if data["augment"]["crop_scale"] is not None:
            data["augment"]["crop_scale"] = list(data["augment"]["crop_scale"])
        data["augment"]["jpeg_quality"] = list(data["augment"]["jpeg_quality"])
        return data

    def comparable(self) -> dict:
        return {k: v for k, v in self.to_dict().items() if k not in self.RESUMABLE}


_FIELD_NAMES = {f.name for f in fields(TrainConfig)}
_AUG_NAMES = {f.name for f in fields(Augmentation)}


def read_config_file(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise EdgecxrError("config file not found", path=path, fix="check the path") from None
    except tomllib.TOMLDecodeError as exc:
        raise EdgecxrError(f"not valid TOML ({exc})", path=path, fix="fix the syntax") from exc
    settings = dict(data.get("train", data))
    unknown = set(settings) - _FIELD_NAMES
    unknown |= {f"augment.{k}" for k in settings.get("augment", {}) if k not in _AUG_NAMES}
    if unknown:
        raise EdgecxrError(f"unknown setting(s) {sorted(unknown)}", path=path,
                           fix=f"use only {sorted(_FIELD_NAMES - {'augment'})} and [augment] "
                               f"{sorted(_AUG_NAMES)}")
    return settings


def resolve(data: str, out: str, *, config_file: str | Path | None = None, **flags) -> TrainConfig:
    """Combine defaults, preset recipe, config file and explicit flags (None = not given)."""
    file_settings = read_config_file(config_file) if config_file else {}
    arch = flags.get("arch") or file_settings.get("arch")
    base = flags.get("base") or file_settings.get("base")
    init = flags.get("init") or file_settings.get("init")
    if init and not arch:
        raise EdgecxrError("--init needs --arch: the preset the encoder was pretrained with",
                           fix="pass --arch PRESET --init RUN/model (see RUN/pretrain.json)")
    if arch and base:
        raise EdgecxrError("--arch and --base are exclusive",
                           fix="use --base to fine-tune a checkpoint or --arch to start from "
                               "random weights")
    if not arch and not base:
        raise EdgecxrError("no model given",
                           fix="pass --base ID_OR_DIR (fine-tune) or --arch PRESET "
                               f"(from scratch; presets: {', '.join(PRESETS)})")
    if arch and arch not in PRESETS:
        raise EdgecxrError(f"unknown --arch {arch!r}", fix=f"choose one of {', '.join(PRESETS)}")
    merged: dict = {}
    if arch:
        merged.update(PRESETS[arch].get("recipe", {}))
    augment = dict(file_settings.pop("augment", {}))
    merged.update(file_settings)
    merged.update({k: v for k, v in flags.items() if v is not None and k in _FIELD_NAMES})
    merged["arch"], merged["base"] = arch, base
    for key in ("crop_scale", "jpeg_quality"):
        if isinstance(augment.get(key), list):
            augment[key] = tuple(augment[key])
    config = TrainConfig(data=str(data), out=str(out), augment=Augmentation(**augment),
                         **{k: v for k, v in merged.items() if k not in ("data", "out")})
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    checks = [
        (config.epochs >= 1, "--epochs must be at least 1"),
        (config.lr > 0, "--lr must be positive"),
        (config.batch_size >= 1, "--batch-size must be at least 1"),
        (0 < config.val_fraction < 1, "--val-fraction must be between 0 and 1"),
        (config.val_split in VAL_SPLITS, f"--val-split must be {' or '.join(VAL_SPLITS)}"),
        (config.class_weights in ("auto", "none"), "--class-weights must be auto or none"),
        (config.device in ("auto", "cpu", "cuda"), "--torch-device must be auto, cpu or cuda"),
        (config.precision in ("auto", "fp32", "bf16", "fp16"),
         "--precision must be auto, fp32, bf16 or fp16"),
        (0 <= config.label_smoothing < 1, "label smoothing must be in [0, 1)"),
        (0 < config.layer_decay <= 1, "--layer-decay must be in (0, 1]"),
        (config.ema_decay == 0 or 0 < config.ema_decay < 1, "--ema-decay must be 0 (off) or in (0, 1)"),
        *_augment_checks(config.augment),
    ]
    for ok, message in checks:
        if not ok:
            raise EdgecxrError(message, fix="see edgecxr train --help")


def _augment_checks(a: Augmentation) -> list[tuple[bool, str]]:
    quality = a.jpeg_quality if isinstance(a.jpeg_quality, tuple) else ()
    return [
        (all(0 <= p <= 1 for p in (a.hflip, a.blur_p, a.noise_p, a.jpeg_p)),
         "augment: hflip, blur_p, noise_p and jpeg_p are probabilities in [0, 1]"),
        (0 <= a.gamma <= 1, "augment: gamma must be in [0, 1] (0.25 gives exponents 0.78-1.28)"),
        (0.2 <= a.blur_sigma <= 5 and 0 <= a.noise_std <= 0.5,
         "augment: blur_sigma in [0.2, 5], noise_std in [0, 0.5]"),
        (len(quality) == 2 and all(isinstance(q, int) and not isinstance(q, bool) for q in quality)
         and 1 <= quality[0] <= quality[-1] <= 95, "augment: jpeg_quality is [low, high], whole numbers within 1-95"),
    ]
