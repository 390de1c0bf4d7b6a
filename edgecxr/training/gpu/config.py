"""The GPU recipe's settings: the preset's architecture, a batch sized for an accelerator.

The defaults are a starting point written before any GPU run (none was lent while this
was written): batch 128 with the CPU reference recipe's lr scaled linearly from batch 32
(1.5e-4 -> 6e-4, rounded down to 5e-4), its warmup, weight decay, label smoothing and
class weights. `run.json` records every resolved value; `--resume` refuses other ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from edgecxr.core.data.folders import VAL_SPLITS
from edgecxr.core.defaults import DEFAULT_SEED
from edgecxr.core.errors import EdgecxrError
from edgecxr.training.gpu.augment import DeviceAugment
from edgecxr.training.presets import PRESETS


@dataclass
class GpuConfig:
    data: str
    out: str
    preset: str = "swinv2-tiny-256"
    epochs: int = 60
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_ratio: float = 0.1
    label_smoothing: float = 0.1
    class_weights: str = "auto"  # inverse class frequency, as the reference recipe
    max_grad_norm: float = 1.0
    ema_decay: float = 0.0  # 0 = off; else validate and save the weight average
    val_fraction: float = 0.1
    seed: int = DEFAULT_SEED
    split_seed: int | None = None  # the validation split's own seed (None = seed), as edgecxr train --split-seed
    val_split: str = "random"  # or "lowest-numbered", as edgecxr train --val-split
    device: str = "cuda"
    precision: str = "auto"  # bf16 on a GPU that has it, else fp32
    compile: bool = False  # torch.compile the training forward pass
    eval_batch_size: int = 256
    evaluate_test: bool = True  # score the frozen checkpoint on test/ once training ends
    augment: DeviceAugment = field(default_factory=DeviceAugment)

    # Settings that may change on --resume without changing the run's result.
    RESUMABLE = ("out", "data", "device", "eval_batch_size", "compile", "evaluate_test")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["augment"] = self.augment.to_dict()
        data["trainer"] = "edgecxr.training.gpu"
        return data

    def comparable(self) -> dict:
        return {k: v for k, v in self.to_dict().items() if k not in self.RESUMABLE}

    def validate(self) -> None:
        checks = [
            (self.preset in PRESETS, f"unknown --preset {self.preset!r} (choose {', '.join(PRESETS)})"),
            (self.epochs >= 1, "--epochs must be at least 1"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.lr > 0, "--lr must be positive"),
            (0 < self.val_fraction < 1, "--val-fraction must be between 0 and 1"),
            (self.val_split in VAL_SPLITS, f"--val-split must be {' or '.join(VAL_SPLITS)}"),
            (0 <= self.label_smoothing < 1, "label smoothing must be in [0, 1)"),
            (self.ema_decay == 0 or 0 < self.ema_decay < 1, "--ema-decay must be 0 (off) or in (0, 1)"),
            (self.class_weights in ("auto", "none"), "class_weights must be auto or none"),
            (self.device in ("cuda", "cpu"), "--torch-device must be cuda or cpu"),
            (self.precision in ("auto", "bf16", "fp32"), "--precision must be auto, bf16 or fp32"),
        ]
        for ok, message in checks:
            if not ok:
                raise EdgecxrError(message, fix="see train/gpu_train.py --help")
