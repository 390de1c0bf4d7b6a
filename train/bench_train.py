"""Training throughput on this machine: images/s per preset and the share of step time
spent waiting for data (target: under 10 %). A benchmark, not a test.

    python train/bench_train.py ../shared/data/kermany [--presets swinv2-tiny-256,swinv2-micro-128]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch.utils.data import DataLoader

from edgecxr.core.data.folders import load_dataset
from edgecxr.core.sysinfo import cpu_info
from edgecxr.training.config import Augmentation
from edgecxr.training.dataset import EpochSampler, FolderDataset
from edgecxr.training.loop import default_workers
from edgecxr.training.model import build_from_preset


def bench(preset: str, samples, classes, batch_size: int, steps: int, warmup: int, workers: int):
    torch.manual_seed(0)
    model, source = build_from_preset(preset, classes)
    model.train()
    dataset = FolderDataset(samples, source.spec, Augmentation(), seed=0)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=EpochSampler(len(samples), 0),
                        num_workers=workers, persistent_workers=workers > 0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    it = iter(loader)
    wait = busy = 0.0
    images = 0
    for step in range(warmup + steps):
        t0 = time.perf_counter()
        x, y = next(it)
        t1 = time.perf_counter()
        loss = loss_fn(model(pixel_values=x).logits, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t2 = time.perf_counter()
        if step >= warmup:
            wait += t1 - t0
            busy += t2 - t1
            images += len(y)
    total = wait + busy
    return {"preset": preset, "images_per_s": images / total, "data_wait_share": wait / total,
            "step_ms": 1000 * total / steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--presets", default="swinv2-tiny-256,swinv2-micro-128")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--workers", type=int, default=default_workers())
    args = parser.parse_args()
    data = load_dataset(args.data)
    cpu = cpu_info()
    print(f"CPU: {cpu['model']}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.workers} loader worker(s), batch {args.batch_size}")
    print(f"{'preset':<20} {'images/s':>9} {'step ms':>9} {'data wait':>10}")
    for preset in args.presets.split(","):
        r = bench(preset, data.train.samples, data.classes, args.batch_size, args.steps, args.warmup,
                  args.workers)
        print(f"{r['preset']:<20} {r['images_per_s']:>9.1f} {r['step_ms']:>9.0f} "
              f"{100 * r['data_wait_share']:>9.1f}%")


if __name__ == "__main__":
    main()
