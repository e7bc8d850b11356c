"""Deterministic train/val splits for datasets published without split files.

The split depends only on the sorted file names, the fraction and the seed, so every
machine, run and worker process sees the same partition (numpy's PCG64 stream is
stable across platforms and versions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def split_items(items: Sequence[T], split: str, *, val_fraction: float = 0.2, seed: int = 0,
                key=lambda item: str(item[0] if isinstance(item, tuple) else item)) -> list[T]:
    """The ``"train"`` or ``"val"`` part (or ``"all"``) of ``items``, ordered by ``key``.

    ``round(n * val_fraction)`` items go to val, chosen by a seeded permutation of the
    items sorted by ``key`` (the image path for ``(image, annotation)`` pairs).
    """
    if split not in ("train", "val", "all"):
        raise ValueError(f"split must be 'train', 'val' or 'all', not {split!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction}")
    ordered = sorted(items, key=key)
    if split == "all":
        return ordered
    n_val = round(len(ordered) * val_fraction)
    is_val = np.zeros(len(ordered), dtype=bool)
    is_val[np.random.default_rng(seed).permutation(len(ordered))[:n_val]] = True
    return [item for item, v in zip(ordered, is_val) if v == (split == "val")]
