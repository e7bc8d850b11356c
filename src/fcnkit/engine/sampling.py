"""Data order and augmentation randomness that make resumed runs bit-identical.

Two things decide what a training step sees: which samples (the order) and how
they were augmented (the random transform parameters). Here both are functions of
``(seed, epoch, sample index)`` only:

- :class:`EpochSampler` is a ``DistributedSampler`` (shuffle by ``seed + epoch``,
  shard by rank) that can start part-way into an epoch and yields ``(epoch, index)``
  keys instead of bare indices;
- :class:`SeededSamples` seeds torch's RNG from that key before the dataset's
  transforms run, and restores it afterwards.

So the batches after a resume are exactly those an uninterrupted run would have
seen, whatever the number of loader workers, and no global RNG is consumed.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler


class EpochSampler(DistributedSampler):
    """``DistributedSampler`` yielding ``(epoch, index)``; ``start`` skips the first
    ``start`` samples of this rank's share (a mid-epoch resume)."""

    def __init__(self, dataset: Dataset, *, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.start = 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = list(super().__iter__())[self.start:]
        return iter([(self.epoch, i) for i in indices])

    def __len__(self) -> int:
        return self.num_samples - self.start


class ShardSampler(Sampler[int]):
    """Every ``num_replicas``-th index from ``rank``: each sample evaluated exactly once
    across ranks (``DistributedSampler`` would repeat samples to even the shards)."""

    def __init__(self, length: int, *, num_replicas: int = 1, rank: int = 0) -> None:
        self.indices = list(range(rank, length, num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed unique to (seed, epoch, index), mixed so nearby keys differ."""
    x = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB) & (2**64 - 1)
    x ^= x >> 31
    return x & (2**63 - 1)


class SeededSamples(Dataset):
    """Wraps a dataset so sample ``(epoch, i)`` is augmented with RNG seeded by
    :func:`sample_seed`; the caller's torch / python RNG state is left untouched."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        s = sample_seed(self.seed, epoch, index)
        cpu, py = torch.default_generator.get_state(), random.getstate()
        torch.default_generator.manual_seed(s)  # CPU generator only: CUDA dropout streams stay put
        random.seed(s)
        try:
            return self.dataset[index]
        finally:
            torch.default_generator.set_state(cpu)
            random.setstate(py)


def ignore_stop_signals_in_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: Ctrl-C, systemd, Slurm's scancel and ``kill -- -PGID``
    signal the whole process group; only the trainer should react (finish the step and
    save), so workers ignore SIGINT and SIGTERM. They still exit with their parent:
    PyTorch's worker loop watches it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


__all__ = ["EpochSampler", "SeededSamples", "ShardSampler", "ignore_stop_signals_in_worker", "sample_seed"]
