"""The SimMIM epoch loop: masked batches, AdamW with warmup + cosine, resumable state.

Masks, like augmentation, are drawn from (seed, epoch, index), so a resumed run sees the
same masks as an uninterrupted one and worker processes need no shared state.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from edgecxr.core.data.folders import Sample
from edgecxr.core.preprocess import PreprocessSpec
from edgecxr.training.dataset import EpochSampler, FolderDataset
from edgecxr.training.distributed import sum_over_processes
from edgecxr.training.loop import (
    default_workers,
    epoch_loader,
    optimizer_step,
    prepare,
    save_model,
    save_state,
)
from edgecxr.training.optim_groups import param_groups
from edgecxr.training.presets import PRESETS
from edgecxr.training.simmim import random_mask


class MaskedDataset(FolderDataset):
    """Items are (augmented input, bool mask over the model's patches)."""

    def __init__(self, samples, spec: PreprocessSpec, augmentation, seed: int, geometry: tuple):
        super().__init__(samples, spec, augmentation, seed)
        self.geometry = geometry  # (image size, patch size, mask patch size, ratio)

    def __getitem__(self, key):
        x, _ = super().__getitem__(key)
        epoch, index = key if isinstance(key, tuple) else (0, key)
        rng = np.random.default_rng([self.seed, epoch, index, 11])
        return x, torch.from_numpy(random_mask(rng, *self.geometry))


class PretrainLoop:
    def __init__(self, config, accelerator, model, spec: PreprocessSpec, samples: list[Sample],
                 reporter):
        from transformers import get_cosine_schedule_with_warmup

        from edgecxr.training.pretrain import AUGMENT

        self.config, self.accelerator, self.spec, self.reporter = config, accelerator, spec, reporter
        preset = PRESETS[config.arch]["model"]
        self.geometry = (preset["image_size"], preset["patch_size"], config.mask_patch_size,
                         config.mask_ratio)
        workers = default_workers() if config.workers < 0 else config.workers
        self.sampler = EpochSampler(len(samples), config.seed)
        data = MaskedDataset(samples, spec, AUGMENT, config.seed, self.geometry)
        loader = epoch_loader(data, self.sampler, config.batch_size, workers, accelerator)
        # A prepared scheduler steps once per process for every optimizer step.
        steps = len(loader) * accelerator.num_processes * config.epochs
        optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay, config.lr), lr=config.lr)
        scheduler = get_cosine_schedule_with_warmup(optimizer, int(config.warmup_ratio * steps), steps)
        self.model, self.optimizer, self.loader, self.scheduler = prepare(
            accelerator, config.seed, model, optimizer, loader, scheduler)

    def run_epoch(self, epoch: int) -> dict:
        acc, model = self.accelerator, self.model
        self.sampler.for_epoch(epoch)
        model.train()
        advance = self.reporter.task(f"epoch {epoch}/{self.config.epochs}", len(self.loader))
        loss_sum = seen = 0.0
        start = time.perf_counter()
        for x, mask in self.loader:
            x, mask = x.to(acc.device), mask.to(acc.device)
            loss = model(pixel_values=x, bool_masked_pos=mask).loss
            optimizer_step(acc, model, self.optimizer, self.scheduler, loss, self.config.max_grad_norm)
            loss_sum += loss.item() * x.shape[0]
            seen += x.shape[0]
            advance()
        seconds = time.perf_counter() - start
        loss_sum, seen = sum_over_processes(acc, loss_sum, seen)
        return {"epoch": epoch, "loss": round(loss_sum / max(seen, 1), 6),
                "lr": self.scheduler.get_last_lr()[0], "seconds": round(seconds, 2),
                "images_per_s": round(seen / seconds, 2)}

    def reconstruct(self, samples: list[Sample]) -> list[tuple]:
        """(input, masked input, reconstruction) grey images for the figure; a fixed mask."""
        model = self.accelerator.unwrap_model(self.model)
        model.eval()
        data = MaskedDataset(samples, self.spec, None, self.config.seed, self.geometry)
        mean, std = np.array(self.spec.mean)[:, None, None], np.array(self.spec.std)[:, None, None]
        size, patch = self.geometry[0], self.geometry[1]
        triples = []
        with torch.inference_mode():
            for i in range(len(data)):
                x, mask = data[(0, i)]
                out = model(pixel_values=x[None].to(self.accelerator.device),
                            bool_masked_pos=mask[None].to(self.accelerator.device))
                image = (x.numpy() * std + mean).mean(0)
                recon = (out.reconstruction[0].float().cpu().numpy() * std + mean).mean(0)
                hidden = mask.numpy().reshape(size // patch, size // patch)
                hidden = hidden.repeat(patch, 0).repeat(patch, 1)
                triples.append((image, np.where(hidden, 0.0, image), np.where(hidden, recon, image)))
        return triples

    def save_model(self, folder: Path) -> None:
        save_model(self.accelerator, self.model, self.spec, folder)

    def save(self, folder: Path, history: list[dict]) -> None:
        save_state(self.accelerator, folder, "history.json", history)

    def load(self, folder: Path) -> list[dict]:
        self.accelerator.load_state(str(folder))
        return json.loads((folder / "history.json").read_text())
