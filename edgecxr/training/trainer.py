"""Fine-tune or train Swin-V2 on an image folder, with accelerate doing devices and precision.

A run folder is self-contained: `model/` (best checkpoint), `run.json` (every resolved
setting, versions, data fingerprints, the split), `history.csv`, `curves.png`,
`checkpoint/` (last epoch's full training state for --resume) and the test report.
"""

from __future__ import annotations

import csv
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from edgecxr.core.data.folders import (
    DataSet,
    drop_bad,
    hash_and_check,
    load_dataset,
    replayed_val_files,
    split_seed_of,
)
from edgecxr.core.data.roots import portable_path
from edgecxr.core.errors import EdgecxrError
from edgecxr.core.fsutil import atomic_write_json
from edgecxr.core.progress import Reporter
from edgecxr.core.provenance import library_versions, utc_now
from edgecxr.training.config import Augmentation, TrainConfig
from edgecxr.training.distributed import main_reporter, require_same_everywhere
from edgecxr.training.presets import PRESETS

RUN_SCHEMA = "edgecxr.run/1"
HISTORY_FIELDS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds",
                  "images_per_s", "data_wait_share"]


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    best_epoch: int = 0
    best_val_acc: float = -1.0
    best_val_loss: float = float("inf")
    patience_left: int = 0
    history: list[dict] = field(default_factory=list)


def train(config: TrainConfig, *, resume: bool = False, reporter: Reporter | None = None,
          stop_after_epoch: int | None = None) -> dict:
    """Run (or resume) training; returns the run record also written to run.json."""
    import torch

    out = Path(config.out)
    accelerator = _accelerator(config)  # first: which process this is decides who writes
    reporter = main_reporter(accelerator, reporter or Reporter())
    recorded = check_out_folder(out, config, resume)
    accelerator.wait_for_everyone()  # every process has checked the folder before any writes
    check_process_count(recorded, accelerator, out)
    started = time.monotonic()

    data = load_dataset(config.data, val_fraction=config.val_fraction, seed=split_seed_of(config.to_dict()),
                        val_files=replayed_val_files(recorded), val_split=config.val_split)
    if data.val_note:  # a small val/ ignored, or one sharing patients with train/ (recorded in run.json too)
        reporter.warn(data.val_note)
    if not config.evaluate_test and data.test is not None:
        reporter.log("test/ left unopened (--no-test): score the checkpoint with `edgecxr evaluate` after export")
        data.test = None
    torch.manual_seed(config.seed)
    model, source = _build_model(config, data.classes)  # before the long data check: fail fast
    data = _verify_data(data, config, reporter)
    fingerprints = {"train": data.train.fingerprint(), "val": data.val.fingerprint()}
    if data.test is not None:
        fingerprints["test"] = data.test.fingerprint()
    require_same_everywhere(accelerator, "data (split fingerprints)", fingerprints, config.data)
    # test/ counts only where both sides opened it: a run started with --no-test may be resumed without it
    compared = [k for k in fingerprints if k != "test" or (recorded and "test" in recorded["data"]["fingerprints"])]
    if recorded and any(recorded["data"]["fingerprints"].get(k) != fingerprints[k] for k in compared):
        changed = [k for k in compared if recorded["data"]["fingerprints"].get(k) != fingerprints[k]]
        raise EdgecxrError(f"the data changed since this run started ({', '.join(changed)} differ)",
                           path=config.data, fix="resume on the original data, or start a new run "
                                                 "with another --out")

    spec = source.spec
    n_params = sum(p.numel() for p in model.parameters())
    reporter.log(f"model: {source.kind} {source.name}, {n_params / 1e6:.2f} M parameters, "
                 f"input {spec.height}x{spec.width}; device {accelerator.device}, "
                 f"precision {_precision_name(accelerator)}")
    reporter.log(f"data: {len(data.train.samples)} train, {len(data.val.samples)} val "
                 f"({data.val_source}), {len(data.test.samples) if data.test else 0} test; "
                 f"classes {data.classes}")

    from edgecxr.training.loop import Loop

    loop = Loop(config, accelerator, model, spec, data, reporter)
    record = _run_record(config, data, source, spec, fingerprints, n_params, accelerator)
    if recorded:
        record["created"] = recorded.get("created", record["created"])
    state = TrainState(patience_left=config.early_stopping)
    if resume and (out / "checkpoint").is_dir():
        state = loop.load(out / "checkpoint")
        reporter.log(f"resuming after epoch {state.epoch} of {config.epochs}")
    write_record(accelerator, out / "run.json", record)

    while state.epoch < config.epochs:
        epoch = state.epoch + 1
        row = loop.run_epoch(epoch)
        state.history.append(row)
        state.epoch = epoch
        improved = (row["val_acc"] > state.best_val_acc or
                    (row["val_acc"] == state.best_val_acc and row["val_loss"] < state.best_val_loss))
        if improved:
            state.best_epoch, state.best_val_acc, state.best_val_loss = epoch, row["val_acc"], row["val_loss"]
            state.patience_left = config.early_stopping
            loop.save_model(out / "model")
        else:
            state.patience_left -= 1
        if accelerator.is_main_process:
            _write_history(out / "history.csv", state.history)
        loop.save(out / "checkpoint", state)
        reporter.epoch_end({**row, "best": improved})
        if config.early_stopping and state.patience_left <= 0 and epoch < config.epochs:
            reporter.log(f"early stop: no better validation accuracy for {config.early_stopping} epochs")
            break
        if stop_after_epoch is not None and epoch >= stop_after_epoch and epoch < config.epochs:
            record.update(status="interrupted", updated=utc_now())
            write_record(accelerator, out / "run.json", record)
            return record

    record["result"] = {
        "epochs_run": state.epoch, "best_epoch": state.best_epoch,
        "best_val_acc": state.best_val_acc, "best_val_loss": state.best_val_loss,
        "stopped_early": state.epoch < config.epochs,
        "train_seconds": round(sum(row["seconds"] for row in state.history), 1),  # all sessions' epochs
        "wall_seconds_last_session": round(time.monotonic() - started, 1),
    }
    if accelerator.is_main_process:
        _finish(out, record, data, config, reporter)
    accelerator.wait_for_everyone()
    return record


def check_out_folder(out: Path, config, resume: bool, record_name: str = "run.json") -> dict | None:
    """A fresh run needs an empty folder; a resumed one its record, with the same settings."""
    import json

    if resume:
        run_json = out / record_name
        if not run_json.is_file():
            raise EdgecxrError(f"nothing to resume: no {record_name}", path=out,
                               fix="start the run without --resume, or give the right --out")
        recorded = json.loads(run_json.read_text())
        old = {k: v for k, v in recorded["settings"].items() if k not in config.RESUMABLE}
        new = config.comparable()
        if isinstance(config, TrainConfig) and isinstance(old.get("augment"), dict):
            # a run recorded before an augmentation option existed had it off
            defaults = TrainConfig(data="", out="", augment=Augmentation()).to_dict()["augment"]
            old["augment"] = {**defaults, **old["augment"]}
        if "val_split" in new:  # a run recorded before --val-split existed split at random
            old.setdefault("val_split", "random")
        for side in (old, new):  # no --split-seed: the seed split it, as before the option existed
            if "seed" in side:
                side["split_seed"] = split_seed_of(side)
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if diff:
            details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
            raise EdgecxrError(f"--resume with other settings than the run was started with "
                               f"({details})", path=out,
                               fix="resume with the original settings, or start a new run "
                                   "with another --out")
        return recorded
    if out.exists() and any(out.iterdir()):
        raise EdgecxrError("the run folder exists and is not empty", path=out,
                           fix="pass --resume to continue it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    return None


def check_process_count(recorded: dict | None, accelerator, out: Path) -> None:
    started_with = (recorded or {}).get("num_processes", accelerator.num_processes)
    if started_with != accelerator.num_processes:
        raise EdgecxrError(f"the run was started with {started_with} training process(es), this "
                           f"is {accelerator.num_processes}", path=out,
                           fix=f"resume with {started_with} process(es): the batches and the "
                               "effective batch size depend on the count")


def write_record(accelerator, path: Path, record: dict) -> None:
    """The run record, written by the main process only."""
    if accelerator.is_main_process:
        atomic_write_json(path, record)


def _verify_data(data: DataSet, config: TrainConfig, reporter: Reporter) -> DataSet:
    samples = data.train.samples + data.val.samples + (data.test.samples if data.test else [])
    advance = reporter.task("checking images", len(samples))
    bad = hash_and_check(samples, skip_bad=config.skip_bad, on_progress=advance)
    if bad:
        reporter.log(f"skipped {len(bad)} unreadable image(s) (--skip-bad)")
        data.train, data.val = drop_bad(data.train, bad), drop_bad(data.val, bad)
        if data.test is not None:
            data.test = drop_bad(data.test, bad)
    data.bad_files = bad
    return data


class DeviceSettings(Protocol):
    """What `_accelerator` reads: TrainConfig and pretrain's PretrainConfig both carry it."""

    device: str
    precision: str


def _accelerator(config: DeviceSettings):
    import torch

    from edgecxr.core.optional import require

    accelerate = require("accelerate", "training")
    if config.device == "cuda" and not torch.cuda.is_available():
        raise EdgecxrError("--torch-device cuda, but no CUDA GPU is visible to torch",
                           fix="use --torch-device cpu, or install a CUDA build of torch")
    use_cpu = config.device == "cpu" or not torch.cuda.is_available()
    precision = config.precision
    if precision == "auto":
        precision = "fp32" if use_cpu else ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    mixed = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]
    if use_cpu and mixed == "fp16":
        raise EdgecxrError("fp16 training needs a GPU", fix="use --precision bf16 or fp32 on CPU")
    try:  # a second run in one process (tests, notebooks) may ask for other settings
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state()
    except (ImportError, AttributeError):
        pass
    return accelerate.Accelerator(cpu=use_cpu, mixed_precision=mixed)


def _precision_name(accelerator) -> str:
    return {"no": "fp32"}.get(str(accelerator.mixed_precision), str(accelerator.mixed_precision))


def _build_model(config: TrainConfig, classes: list[str]):
    from edgecxr.training.model import build_from_preset, load_pretrained

    if config.arch and config.init:
        from edgecxr.training.model import ModelSource
        from edgecxr.training.simmim import load_encoder

        model, source = build_from_preset(config.arch, classes)
        load_encoder(model, config.init)
        return model, ModelSource("preset+simmim", f"{config.arch} from {config.init}", source.spec)
    if config.arch:
        return build_from_preset(config.arch, classes)
    if config.base is None:  # resolve_config refuses this; a TrainConfig built in code may not have
        raise EdgecxrError("no model given", fix="set base (a checkpoint to fine-tune) or arch (a preset)")
    return load_pretrained(config.base, classes)


def _run_record(config, data: DataSet, source, spec, fingerprints, n_params, accelerator) -> dict:
    model = {"source": source.kind, "name": source.name, "parameters": n_params,
             "architecture": PRESETS[config.arch]["model"] if config.arch else None}
    return run_record(config, data, spec, fingerprints, model, device=str(accelerator.device),
                      precision=_precision_name(accelerator), num_processes=accelerator.num_processes,
                      skipped_bad=data.bad_files)


def run_record(config, data: DataSet, spec, fingerprints, model: dict, *, device: str, precision: str,
               num_processes: int, skipped_bad: list) -> dict:
    """run.json as it starts (one writer of the format: `edgecxr train` and the GPU recipe both use it)."""
    return {
        "schema": RUN_SCHEMA, "status": "running", "created": utc_now(), "updated": utc_now(),
        "settings": config.to_dict(),
        "model": model,
        "classes": data.classes,
        "preprocess": spec.to_dict(),
        "data": {
            "root": portable_path(config.data), "fingerprints": fingerprints,
            "counts": {"train": data.train.counts(), "val": data.val.counts(),
                       "test": data.test.counts() if data.test else None},
            "val_source": data.val_source, "val_note": data.val_note, "val_groups": data.val_rule,
            "skipped_bad": skipped_bad,
        },
        "split": {"train_root": portable_path(data.train.root), "val_root": portable_path(data.val.root),
                  "train": [s.rel for s in data.train.samples],
                  "val": [s.rel for s in data.val.samples]},
        "device": device, "precision": precision, "num_processes": num_processes,
        "versions": library_versions(),
    }


def _write_history(path: Path, history: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)


def _finish(out: Path, record: dict, data: DataSet, config: TrainConfig, reporter: Reporter):
    from edgecxr.core.optional import available

    if available("matplotlib"):
        from edgecxr.core.plots import curves_png

        curves_png(out / "history.csv", out / "curves.png")
    if data.test is not None:
        from edgecxr.training.evaluate import evaluate_checkpoint

        reporter.log("evaluating the best checkpoint on the test split")
        report = evaluate_checkpoint(
            out / "model", data.test.root, out, batch_size=config.eval_batch_size,
            device=record["device"], skip_bad=config.skip_bad,
            progress=lambda total: reporter.task("test set", total))
        record["result"]["test"] = {
            "accuracy": report["metrics"]["accuracy"],
            "fingerprint": report["data"]["fingerprint"], "n_images": report["n_images"]}
    shutil.rmtree(out / "checkpoint.tmp", ignore_errors=True)
    record.update(status="finished", updated=utc_now())
    atomic_write_json(out / "run.json", record)
