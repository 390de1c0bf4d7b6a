"""Torch datasets over image folders, decoded and preprocessed by the shared numpy code."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from edgecxr.core.data.decode import decode_file
from edgecxr.core.data.folders import Sample
from edgecxr.core.preprocess import PreprocessSpec
from edgecxr.training.augment import augment
from edgecxr.training.config import Augmentation


class FolderDataset(Dataset):
    """Items are (input tensor, label); keys are indices or (epoch, index) pairs.

    The epoch travels inside the key (see `EpochSampler`) rather than as dataset state,
    so worker processes never hold a stale epoch.
    """

    def __init__(self, samples: Sequence[Sample], spec: PreprocessSpec,
                 augmentation: Augmentation | None = None, seed: int = 0):
        self.samples = list(samples)
        self.spec = spec
        self.augmentation = augmentation
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        sample = self.samples[index]
        pixels = decode_file(sample.path).pixels
        if self.augmentation is None:
            x = self.spec(pixels)
        else:
            rng = np.random.default_rng([self.seed, epoch, index])
            x = augment(pixels, self.spec, self.augmentation, rng)
        return torch.from_numpy(x), sample.label


class EpochSampler(Sampler):
    """A seeded permutation per epoch, yielding (epoch, index) keys.

    The order depends only on (seed, epoch), never on how many epochs this process has
    run, which is what makes `--resume` reproduce an uninterrupted run.
    """

    def __init__(self, n: int, seed: int):
        self.n = n
        self.seed = seed
        self.epoch = 0

    def for_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch, 7]).permutation(self.n)
        return iter([(self.epoch, int(i)) for i in order])


class ShardedEpochBatches(Sampler):
    """One process's batches of an `EpochSampler` epoch when several processes train.

    Every optimizer step deals `batch_size x processes` keys of the epoch's permutation
    round-robin, so the processes' keys never overlap and each image is used once per
    epoch (accelerate's own sharding pads the last batch with repeated images instead).
    A remainder smaller than the process count joins the last step, so every process
    takes the same number of steps, each with at least one image: DDP needs both.
    """

    def __init__(self, epochs: EpochSampler, batch_size: int, rank: int, world: int):
        self.epochs, self.batch_size, self.rank, self.world = epochs, batch_size, rank, world

    def __len__(self) -> int:
        full, rest = divmod(self.epochs.n, self.batch_size * self.world)
        return max(1, full + (rest >= self.world))

    def __iter__(self):
        keys, chunk, steps = list(self.epochs), self.batch_size * self.world, len(self)
        for step in range(steps):
            end = (step + 1) * chunk if step < steps - 1 else len(keys)
            yield keys[step * chunk:end][self.rank::self.world]
