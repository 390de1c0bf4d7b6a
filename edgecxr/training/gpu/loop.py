"""The GPU recipe's run: data on the device, one epoch at a time, checkpoint chosen on validation.

The run folder is what `edgecxr train` writes and `edgecxr export` reads: `model/` (the
best epoch's Hugging Face folder with `preprocess.json`), `run.json` (settings, the
patient-grouped split, fingerprints), `history.csv`, and `checkpoint/state.pt` (the last
epoch's model, optimizer, schedule and weight average) for `--resume`.

Honest by construction: validation is carved from train/ by patient
(`edgecxr.core.data.folders.load_dataset`); the checkpoint is chosen on validation
accuracy (then loss), as `edgecxr train` chooses it; test/ is not opened until training
has ended, and then only to score the frozen checkpoint.

Exact resume: the epoch's image order, augmentation draws and dropout seed derive from
(seed, epoch) alone, and the rest of the state is saved after every epoch, so a run
resumed after epoch k ends with the weights of an uninterrupted run (on the same device
and software; GPU kernels may not be bitwise deterministic).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from edgecxr.core.data.folders import load_dataset, replayed_val_files, split_seed_of
from edgecxr.core.errors import EdgecxrError
from edgecxr.core.fsutil import atomic_write_json
from edgecxr.core.metrics import positive_class_index, roc_auc
from edgecxr.core.preprocess import PreprocessSpec
from edgecxr.core.progress import Reporter
from edgecxr.core.provenance import utc_now
from edgecxr.training.ema import WeightAverage
from edgecxr.training.gpu.augment import augment_batch
from edgecxr.training.gpu.config import GpuConfig
from edgecxr.training.gpu.data import ImageTensor, decode_split, normalize, to_unit
from edgecxr.training.gpu.run_folder import (
    STATE_FILE,
    finish,
    load_state,
    run_record,
    save_model,
    save_state,
    write_history,
)
from edgecxr.training.optim_groups import param_groups
from edgecxr.training.trainer import TrainState, check_out_folder


def train_gpu(config: GpuConfig, *, resume: bool = False, reporter: Reporter | None = None,
              stop_after_epoch: int | None = None) -> dict:
    """Run (or resume) the recipe; returns the run record also written to run.json."""
    from edgecxr.training.model import build_from_preset

    config.validate()
    reporter = reporter or Reporter()
    device, bf16 = _device(config)
    out = Path(config.out)
    recorded = check_out_folder(out, config, resume)
    data = load_dataset(config.data, val_fraction=config.val_fraction,
                        seed=split_seed_of(config.to_dict()),
                        val_files=replayed_val_files(recorded), val_split=config.val_split)
    if data.val_note:  # a small val/ ignored, or one sharing patients with train/ (recorded in run.json too)
        reporter.warn(data.val_note)
    torch.manual_seed(config.seed)
    model, source = build_from_preset(config.preset, data.classes)
    spec = source.spec
    advance = reporter.task("decoding train + val", len(data.train.samples) + len(data.val.samples))
    train_set = decode_split(data.train.samples, spec, on_progress=advance).to(device)
    val_set = decode_split(data.val.samples, spec, on_progress=advance).to(device)
    fingerprints = {"train": data.train.fingerprint(), "val": data.val.fingerprint()}
    if recorded and {k: recorded["data"]["fingerprints"].get(k) for k in fingerprints} != fingerprints:
        raise EdgecxrError("the data changed since this run started", path=config.data,
                           fix="resume on the original data, or start a new run with another --out")
    reporter.log(f"{len(train_set)} train, {len(val_set)} val images on {device} "
                 f"({train_set.pixels.numel() / 1e6:.0f} MB uint8); precision {'bf16' if bf16 else 'fp32'}")

    model.to(device)
    parts = _parts(config, model, spec, train_set, len(data.classes), device, bf16)
    record = run_record(config, data, spec, fingerprints, model, device, bf16)
    state = TrainState()
    if recorded:
        record["created"] = recorded.get("created", record["created"])
        if (out / "checkpoint" / STATE_FILE).is_file():
            state = load_state(out / "checkpoint", parts)
            reporter.log(f"resuming after epoch {state.epoch} of {config.epochs}")
    atomic_write_json(out / "run.json", record)

    while state.epoch < config.epochs:
        epoch = state.epoch + 1
        reporter.epoch_start(epoch, config.epochs, parts.steps)
        row = _train_epoch(config, epoch, parts, train_set)
        row.update(_validate(parts.evaluated(), val_set, spec, config.eval_batch_size, bf16,
                             positive_class_index(data.classes)))
        state.history.append(row)
        state.epoch = epoch
        improved = (row["val_acc"], -row["val_loss"]) > (state.best_val_acc, -state.best_val_loss)
        if improved:
            state.best_epoch, state.best_val_acc, state.best_val_loss = epoch, row["val_acc"], row["val_loss"]
            save_model(parts.evaluated(), spec, out / "model")
        write_history(out / "history.csv", state.history)
        save_state(out / "checkpoint", parts, state)
        reporter.epoch_end({**row, "best": improved})
        if stop_after_epoch is not None and stop_after_epoch <= epoch < config.epochs:
            record.update(status="interrupted", updated=utc_now())
            atomic_write_json(out / "run.json", record)
            return record

    record["result"] = {
        "epochs_run": state.epoch, "best_epoch": state.best_epoch,
        "best_val_acc": state.best_val_acc, "best_val_loss": state.best_val_loss,
        "train_seconds": round(sum(r["seconds"] for r in state.history), 1),
    }
    finish(out, record, data, config, device, reporter)
    return record


@dataclass
class Parts:
    """What one training step touches; `model` is the module saved, `forward` maybe compiled."""

    model: torch.nn.Module
    forward: Callable
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    criterion: torch.nn.Module
    average: WeightAverage | None
    spec: PreprocessSpec
    bf16: bool
    steps: int  # optimizer steps per epoch

    def evaluated(self) -> torch.nn.Module:
        """The weights validated and saved: the running average when there is one."""
        return self.average.module if self.average is not None else self.model


def _parts(config: GpuConfig, model, spec: PreprocessSpec, train_set: ImageTensor, n_classes: int,
           device: torch.device, bf16: bool) -> Parts:
    from transformers import get_cosine_schedule_with_warmup

    steps = max(1, len(train_set) // config.batch_size)
    groups = param_groups(model, config.weight_decay, config.lr, 1.0, list(model.config.depths))
    optimizer = torch.optim.AdamW(groups, lr=config.lr, fused=device.type == "cuda")
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, int(config.warmup_ratio * steps * config.epochs), steps * config.epochs)
    weights = _class_weights(train_set, n_classes) if config.class_weights == "auto" else None
    criterion = torch.nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)
    return Parts(model, torch.compile(model) if config.compile else model, optimizer, scheduler,
                 criterion, WeightAverage(model, config.ema_decay) if config.ema_decay else None,
                 spec, bf16, steps)


def _device(config: GpuConfig) -> tuple[torch.device, bool]:
    if config.device == "cuda" and not torch.cuda.is_available():
        raise EdgecxrError("--torch-device cuda, but no CUDA GPU is visible to torch",
                           fix="run on a machine with a GPU and a CUDA build of torch, or pass --torch-device cpu")
    device = torch.device(config.device)
    if config.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise EdgecxrError("this GPU has no bf16", fix="pass --precision fp32")
    bf16 = config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda"
                                          and torch.cuda.is_bf16_supported())
    return device, bf16


def _train_epoch(config: GpuConfig, epoch: int, parts: Parts, data: ImageTensor) -> dict:
    """One pass over `steps` full batches of a (seed, epoch) permutation; the partial last
    batch is dropped (a different remainder each epoch), so every step has one shape."""
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    torch.manual_seed(config.seed * 100_003 + epoch)  # dropout and drop-path draws
    order = torch.randperm(len(data), generator=generator).to(data.pixels.device)
    parts.model.train()
    loss_sum = torch.zeros((), device=data.pixels.device)
    correct = torch.zeros((), device=data.pixels.device, dtype=torch.int64)
    size = min(config.batch_size, len(data))
    start = time.perf_counter()
    for step in range(parts.steps):
        index = order[step * size:(step + 1) * size]
        x = augment_batch(to_unit(data.pixels[index]), config.augment, generator)
        x, y = normalize(x, parts.spec), data.labels[index]
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=parts.bf16):
            logits = parts.forward(pixel_values=x).logits
        loss = parts.criterion(logits.float(), y)
        loss.backward()
        if config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(parts.model.parameters(), config.max_grad_norm)
        parts.optimizer.step()
        parts.scheduler.step()
        parts.optimizer.zero_grad(set_to_none=True)
        if parts.average is not None:
            parts.average.update(parts.model)
        loss_sum += loss.detach() * y.shape[0]  # summed on the device: no sync per step
        correct += (logits.argmax(-1) == y).sum()
    seconds = time.perf_counter() - start
    seen = parts.steps * size
    return {"epoch": epoch, "train_loss": round(loss_sum.item() / seen, 6),
            "train_acc": round(correct.item() / seen, 6), "lr": parts.scheduler.get_last_lr()[0],
            "seconds": round(seconds, 2), "images_per_s": round(seen / seconds, 1)}


@torch.inference_mode()
def _validate(model, data: ImageTensor, spec, batch_size: int, bf16: bool, positive: int) -> dict:
    """Loss and accuracy (which choose the checkpoint, as in `edgecxr train`), and the positive
    class's ROC AUC over the validation split, recorded to compare recipes by ranking."""
    model.eval()
    loss_sum, correct = 0.0, 0
    scores = []
    for start in range(0, len(data), batch_size):
        x = normalize(to_unit(data.pixels[start:start + batch_size]), spec)
        y = data.labels[start:start + batch_size]
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(pixel_values=x).logits.float()
        loss_sum += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += int((logits.argmax(-1) == y).sum().item())
        scores.append(torch.softmax(logits, dim=-1)[:, positive].cpu())
    n = max(len(data), 1)
    auc = roc_auc((data.labels == positive).tolist(), torch.cat(scores).tolist()) if scores else None
    return {"val_loss": round(loss_sum / n, 6), "val_acc": round(correct / n, 6),
            "val_auc": None if auc is None else round(auc, 6)}


def _class_weights(data: ImageTensor, n_classes: int) -> torch.Tensor:
    counts = torch.bincount(data.labels, minlength=n_classes).float()
    return counts.sum() / (n_classes * counts.clamp(min=1))
