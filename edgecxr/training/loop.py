"""The epoch loop: AdamW (optionally layer-wise lr decay and a weight average), warmup +
cosine decay, accelerate for devices and precision.

Everything that decides the result of an epoch (data order, augmentation draws, dropout
RNG, optimizer and scheduler state) is either derived from (seed, epoch) or saved in the
checkpoint, so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from edgecxr.core.data.folders import DataSet
from edgecxr.core.errors import EdgecxrError
from edgecxr.core.preprocess import PreprocessSpec
from edgecxr.training.config import TrainConfig
from edgecxr.training.dataset import EpochSampler, FolderDataset, ShardedEpochBatches
from edgecxr.training.distributed import sum_over_processes
from edgecxr.training.ema import WeightAverage
from edgecxr.training.optim_groups import param_groups


def optimizer_step(acc, model, optimizer, scheduler, loss, max_grad_norm: float | None) -> None:
    """One training step, shared by fine-tuning and pretraining: backward through accelerate
    (so gradients sync across processes), optional clipping, then optimizer and schedule."""
    acc.backward(loss)
    if max_grad_norm:
        acc.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def epoch_loader(dataset, sampler: EpochSampler, batch_size: int, workers: int,
                 accelerator) -> DataLoader:
    """Batches of the epoch order; with several processes, this process's disjoint shard."""
    if accelerator.num_processes == 1:
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                          drop_last=False, persistent_workers=workers > 0)
    if sampler.n < accelerator.num_processes:
        raise EdgecxrError(f"{sampler.n} training images cannot be shared among "
                           f"{accelerator.num_processes} processes", fix="start fewer processes")
    batches = ShardedEpochBatches(sampler, batch_size, accelerator.process_index,
                                  accelerator.num_processes)
    return DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                      persistent_workers=workers > 0)


def prepare(accelerator, seed: int, model, optimizer, loader, scheduler) -> tuple:
    """accelerate wraps model, optimizer and scheduler. With several processes the loader is
    already sharded, so accelerate must not shard it again (its padding would repeat images),
    and each process reseeds so that dropout draws differ between them."""
    if accelerator.num_processes == 1:
        return accelerator.prepare(model, optimizer, loader, scheduler)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    torch.manual_seed(seed + accelerator.process_index)
    return model, optimizer, loader, scheduler


def default_workers() -> int:
    """One loader process per two cores, at most four: enough to keep a small box's cores busy."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


class Loop:
    def __init__(self, config: TrainConfig, accelerator, model, spec: PreprocessSpec,
                 data: DataSet, reporter):
        self.config = config
        self.accelerator = accelerator
        self.spec = spec
        self.reporter = reporter
        workers = default_workers() if config.workers < 0 else config.workers
        world, rank = accelerator.num_processes, accelerator.process_index
        self.sampler = EpochSampler(len(data.train.samples), config.seed)
        train_set = FolderDataset(data.train.samples, spec, config.augment, config.seed)
        val_set = FolderDataset(data.val.samples[rank::world], spec)  # disjoint shards, no padding
        train_loader = epoch_loader(train_set, self.sampler, config.batch_size, workers, accelerator)
        self.val_loader = DataLoader(val_set, batch_size=config.eval_batch_size, num_workers=workers,
                                     persistent_workers=workers > 0)
        # A prepared scheduler steps once per process for every optimizer step.
        steps = len(train_loader) * world
        groups = param_groups(model, config.weight_decay, config.lr, config.layer_decay,
                              list(getattr(model.config, "depths", []) or []))
        optimizer = torch.optim.AdamW(groups, lr=config.lr)
        from transformers import get_cosine_schedule_with_warmup

        scheduler = get_cosine_schedule_with_warmup(
            optimizer, int(config.warmup_ratio * steps * config.epochs), steps * config.epochs)
        weights = _class_weights(data, config.class_weights)
        self.criterion = torch.nn.CrossEntropyLoss(
            weight=None if weights is None else weights.to(accelerator.device),
            label_smoothing=config.label_smoothing)
        self.plain_criterion = torch.nn.CrossEntropyLoss(reduction="sum")
        (self.model, self.optimizer, self.train_loader, self.scheduler) = prepare(
            accelerator, config.seed, model, optimizer, train_loader, scheduler)
        self.average = None
        if config.ema_decay:
            self.average = WeightAverage(accelerator.unwrap_model(self.model), config.ema_decay)
            accelerator.register_for_checkpointing(self.average)

    # -- one epoch ----------------------------------------------------------------------
    def run_epoch(self, epoch: int) -> dict:
        acc, model = self.accelerator, self.model
        self.sampler.for_epoch(epoch)
        model.train()
        steps = len(self.train_loader)
        self.reporter.epoch_start(epoch, self.config.epochs, steps)
        loss_sum = correct = seen = 0.0
        wait = 0.0
        start = tick = time.perf_counter()
        for x, y in self.train_loader:
            x, y = x.to(acc.device), y.to(acc.device)
            wait += time.perf_counter() - tick
            logits = model(pixel_values=x).logits
            loss = self.criterion(logits.float(), y)
            optimizer_step(acc, model, self.optimizer, self.scheduler, loss, self.config.max_grad_norm)
            if self.average is not None:
                self.average.update(acc.unwrap_model(model))
            n = y.shape[0]
            loss_sum += loss.item() * n
            correct += (logits.argmax(-1) == y).sum().item()
            seen += n
            elapsed = time.perf_counter() - start
            self.reporter.step(loss_sum / seen, correct / seen, seen / elapsed)
            tick = time.perf_counter()
        seconds = time.perf_counter() - start
        loss_sum, correct, seen = sum_over_processes(acc, loss_sum, correct, seen)
        val_loss, val_acc, val_seen = self.validate()
        return {
            "epoch": epoch, "train_loss": round(loss_sum / max(seen, 1), 6),
            "train_acc": round(correct / max(seen, 1), 6), "val_loss": round(val_loss, 6),
            "val_acc": round(val_acc, 6), "lr": self.scheduler.get_last_lr()[0],
            "seconds": round(seconds, 2), "images_per_s": round(seen / seconds, 2),
            "data_wait_share": round(wait / seconds, 4),
            "train_images": int(seen), "val_images": int(val_seen),
        }

    def evaluated_model(self):
        """The weights validated and saved: the running average when there is one, else the
        live model without its DDP wrapper."""
        if self.average is not None:
            return self.average.module
        return self.accelerator.unwrap_model(self.model)

    def validate(self) -> tuple[float, float, float]:
        """Loss and accuracy over the whole validation split: each process scores its own
        disjoint shard and the sums are added, so no image is counted twice."""
        acc = self.accelerator
        model = self.evaluated_model()  # no DDP hooks: shards may differ in length
        model.eval()
        loss_sum = correct = seen = 0.0
        with torch.inference_mode():
            for x, y in self.val_loader:
                x, y = x.to(acc.device), y.to(acc.device)
                logits = model(pixel_values=x).logits.float()
                loss_sum += self.plain_criterion(logits, y).item()
                correct += (logits.argmax(-1) == y).sum().item()
                seen += y.shape[0]
        loss_sum, correct, seen = sum_over_processes(acc, loss_sum, correct, seen)
        return loss_sum / max(seen, 1), correct / max(seen, 1), seen

    # -- persistence --------------------------------------------------------------------
    def save_model(self, folder: Path) -> None:
        save_model(self.accelerator, self.evaluated_model(), self.spec, folder)

    def save(self, folder: Path, state) -> None:
        save_state(self.accelerator, folder, "trainer_state.json", state.__dict__)

    def load(self, folder: Path):
        from edgecxr.training.trainer import TrainState

        self.accelerator.load_state(str(folder))
        return TrainState(**json.loads((folder / "trainer_state.json").read_text()))


def save_model(accelerator, model, spec: PreprocessSpec, folder: Path) -> None:
    """The unwrapped model as a checkpoint folder, written beside and renamed over the old one."""
    from edgecxr.training.model import save_checkpoint

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        save_checkpoint(accelerator.unwrap_model(model), spec, tmp)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)


def save_state(accelerator, folder: Path, name: str, extra) -> None:
    """Full training state plus `extra` as JSON `name`, written beside and renamed over."""
    tmp = folder.with_name(folder.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    # save_state ends without a barrier, and each process writes its own random_states_N.pkl:
    # renaming before every process has finished would pull the folder from under a slower one.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / name).write_text(json.dumps(extra, indent=2))
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    accelerator.wait_for_everyone()


def _class_weights(data: DataSet, mode: str):
    if mode == "none":
        return None
    counts = torch.tensor(list(data.train.counts().values()), dtype=torch.float32)
    return counts.sum() / (len(counts) * counts.clamp(min=1))
