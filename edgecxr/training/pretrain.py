"""`edgecxr pretrain`: SimMIM on unlabelled training images, for `edgecxr train --init`.

A pretraining run folder holds `model/` (the last epoch's Swinv2ForMaskedImageModeling,
whose `swinv2.*` encoder `train --init` copies), `pretrain.json` (settings, image count
and fingerprint, versions), `history.csv`, `loss.png`, `reconstructions.png` and
`checkpoint/` (full state for --resume). There is no validation: the reconstruction
loss is not what the classifier is chosen on, the fine-tuning run's patient split is.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgecxr.core.data.decode import SUPPORTED_SUFFIXES
from edgecxr.core.data.folders import Sample, Split, drop_bad, hash_and_check
from edgecxr.core.data.roots import portable_path
from edgecxr.core.defaults import DEFAULT_SEED
from edgecxr.core.errors import EdgecxrError
from edgecxr.core.fsutil import atomic_write_json
from edgecxr.core.preprocess import PreprocessSpec
from edgecxr.core.progress import Reporter
from edgecxr.core.provenance import library_versions, utc_now
from edgecxr.training.config import Augmentation
from edgecxr.training.presets import PRESETS

SCHEMA = "edgecxr.pretrain/1"
HISTORY_FIELDS = ["epoch", "loss", "lr", "seconds", "images_per_s"]
# SimMIM's own pretraining augmentation: a mild random resized crop and a flip.
AUGMENT = Augmentation(hflip=0.5, rotate_degrees=0.0, crop_scale=(0.67, 1.0))


@dataclass
class PretrainConfig:
    images: str
    out: str
    arch: str
    epochs: int = 100
    lr: float = 5e-4
    batch_size: int = 64
    weight_decay: float = 0.05
    warmup_ratio: float = 0.05
    max_grad_norm: float = 5.0
    mask_ratio: float = 0.6
    mask_patch_size: int = 32
    seed: int = DEFAULT_SEED
    device: str = "auto"
    precision: str = "auto"
    workers: int = -1
    skip_bad: bool = False

    RESUMABLE = ("out", "images", "device", "workers")

    def comparable(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in self.RESUMABLE}

    def check(self) -> None:
        from edgecxr.training.simmim import check_mask_geometry

        if self.arch not in PRESETS:
            raise EdgecxrError(f"unknown --arch {self.arch!r}", fix=f"choose one of {', '.join(PRESETS)}")
        if not 0 < self.mask_ratio < 1:
            raise EdgecxrError("--mask-ratio must be between 0 and 1", fix="SimMIM uses 0.6")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise EdgecxrError("--epochs and --batch-size must be at least 1, --lr positive",
                               fix="see edgecxr pretrain --help")
        model = PRESETS[self.arch]["model"]
        check_mask_geometry(model["image_size"], model["patch_size"], self.mask_patch_size)


def list_images(folder: Path) -> list[Sample]:
    """Every image under the folder, labels ignored; a data root with test/ is refused."""
    if not folder.is_dir():
        raise EdgecxrError("image folder not found", path=folder, fix="give e.g. DATA/train")
    if (folder / "test").is_dir():
        raise EdgecxrError("the folder holds a test/ split, which pretraining must never see",
                           path=folder, fix="give the training images only, e.g. DATA/train")
    files = sorted(p for p in folder.rglob("*") if p.is_file()
                   and p.suffix.lower() in SUPPORTED_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise EdgecxrError("no PNG, JPEG or DICOM images", path=folder, fix="check the path")
    return [Sample(p, p.relative_to(folder).as_posix(), 0) for p in files]


def pretrain(config: PretrainConfig, *, resume: bool = False, reporter: Reporter | None = None,
             stop_after_epoch: int | None = None) -> dict:
    """Run (or resume) SimMIM; returns the record also written to pretrain.json."""
    import torch

    from edgecxr.training.distributed import main_reporter, require_same_everywhere
    from edgecxr.training.simmim import build_masked_model
    from edgecxr.training.trainer import _accelerator, check_out_folder, check_process_count, write_record

    config.check()
    out = Path(config.out)
    accelerator = _accelerator(config)  # first: which process this is decides who writes
    reporter = main_reporter(accelerator, reporter or Reporter())
    recorded = check_out_folder(out, config, resume, "pretrain.json")
    accelerator.wait_for_everyone()  # every process has checked the folder before any writes
    check_process_count(recorded, accelerator, out)
    split = Split("pretrain", Path(config.images), ["any"], list_images(Path(config.images)))
    bad = hash_and_check(split.samples, skip_bad=config.skip_bad,
                         on_progress=reporter.task("checking images", len(split.samples)))
    split = drop_bad(split, bad)
    fingerprint = split.fingerprint()
    require_same_everywhere(accelerator, "images (fingerprints)", fingerprint, config.images)
    if recorded and recorded["data"]["fingerprint"] != fingerprint:
        raise EdgecxrError("the images changed since this run started", path=config.images,
                           fix="resume on the original images, or start a new --out")
    torch.manual_seed(config.seed)
    model = build_masked_model(config.arch)
    size = PRESETS[config.arch]["model"]["image_size"]
    spec = PreprocessSpec(height=size, width=size)
    from edgecxr.training.pretrain_loop import PretrainLoop

    loop = PretrainLoop(config, accelerator, model, spec, split.samples, reporter)
    record = {
        "schema": SCHEMA, "status": "running", "created": (recorded or {}).get("created", utc_now()),
        "updated": utc_now(), "settings": asdict(config),
        "model": {"kind": "Swinv2ForMaskedImageModeling", "arch": config.arch,
                  "architecture": PRESETS[config.arch]["model"],
                  "parameters": sum(p.numel() for p in model.parameters())},
        "data": {"root": portable_path(config.images), "images": len(split.samples),
                 "fingerprint": fingerprint, "skipped_bad": bad},
        "device": str(accelerator.device), "num_processes": accelerator.num_processes,
        "versions": library_versions(),
    }
    history: list[dict] = []
    if resume and (out / "checkpoint").is_dir():
        history = loop.load(out / "checkpoint")
        reporter.log(f"resuming after epoch {len(history)} of {config.epochs}")
    write_record(accelerator, out / "pretrain.json", record)
    while len(history) < config.epochs:
        history.append(loop.run_epoch(len(history) + 1))
        loop.save_model(out / "model")
        loop.save(out / "checkpoint", history)
        if accelerator.is_main_process:
            _write_history(out / "history.csv", history)
        row = history[-1]
        reporter.log(f"epoch {row['epoch']:>3}: masked L1 loss {row['loss']:.4f}, "
                     f"{row['images_per_s']:.1f} img/s, {row['seconds']:.0f} s")
        if stop_after_epoch is not None and len(history) >= stop_after_epoch < config.epochs:
            record.update(status="interrupted", updated=utc_now())
            write_record(accelerator, out / "pretrain.json", record)
            return record
    _figures(out, loop, split.samples)
    record["result"] = {"epochs_run": len(history), "final_loss": history[-1]["loss"],
                        "train_seconds": round(sum(r["seconds"] for r in history), 1)}
    record.update(status="finished", updated=utc_now())
    if accelerator.is_main_process:
        shutil.rmtree(out / "checkpoint.tmp", ignore_errors=True)
        atomic_write_json(out / "pretrain.json", record)
    accelerator.wait_for_everyone()
    return record


def _write_history(path: Path, history: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)


def _figures(out: Path, loop, samples: list[Sample]) -> None:
    from edgecxr.core.optional import available

    if not available("matplotlib") or not loop.accelerator.is_main_process:
        return
    from edgecxr.core.plots import loss_curve_png, reconstructions_png

    loss_curve_png(out / "history.csv", out / "loss.png", title="SimMIM masked-pixel L1 loss")
    picked = [samples[i] for i in np.random.default_rng(0).permutation(len(samples))[:4]]
    reconstructions_png(loop.reconstruct(picked), out / "reconstructions.png")
