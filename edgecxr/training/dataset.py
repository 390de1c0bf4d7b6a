"""Torch datasets over image folders, decoded and preprocessed by the shared numpy code."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from edgecxr.data.decode import decode_file
from edgecxr.data.folders import Sample
from edgecxr.preprocess import PreprocessSpec
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
