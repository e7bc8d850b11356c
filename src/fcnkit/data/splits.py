"""Which samples a split names: seeded splits for datasets published without split files,
and split expressions (unions of splits, samples kept or dropped by file name).

``split_items`` depends only on the sorted file names, the fraction and the seed, so
every machine, run and worker process sees the same partition (numpy's PCG64 stream is
stable across platforms and versions).

A split expression picks samples across a dataset's published splits, so a
sequence-disjoint validation set or a train+val release fit is one string, not a script:

    train+val             both splits, end to end (the literature's release fit)
    train@0006R0          only train samples whose image name starts with 0006R0
    train+val@!0006R0     train and val without them (the held-out sequence's complement)
    train@0001TP,0006R0   several patterns: a sample is kept if it matches any of them
    train@*_0[0-4]*       a pattern with wildcards is an fnmatch glob on the image's file stem

A pattern without wildcards matches as a prefix of the image file's stem; ``!`` drops
the samples it matches (drops win over keeps).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from torch.utils.data import Dataset

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


@dataclass(frozen=True)
class SplitExpression:
    """A parsed split expression: the published splits and the name patterns."""

    splits: tuple[str, ...]
    keep: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()

    @property
    def is_plain(self) -> bool:
        """One published split with no patterns: the format's own split, untouched."""
        return len(self.splits) == 1 and not self.keep and not self.drop

    def selects(self, stem: str) -> bool:
        """Whether a sample whose image file stem is ``stem`` belongs to the expression."""
        if any(_matches(p, stem) for p in self.drop):
            return False
        return not self.keep or any(_matches(p, stem) for p in self.keep)


def _matches(pattern: str, stem: str) -> bool:
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(stem, pattern)
    return stem.startswith(pattern)


def parse_split(text: str) -> SplitExpression:
    """``"train+val@!0006R0"`` -> ``SplitExpression(("train", "val"), drop=("0006R0",))``;
    errors say what is wrong with the expression."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"split must be a split name or expression such as 'train+val@!0006R0', not {text!r}")
    names_part, at, pattern_part = text.strip().partition("@")
    names = tuple(n.strip() for n in names_part.split("+"))
    if not all(names):
        raise ValueError(f"split {text!r}: an empty split name around '+'")
    if len(set(names)) != len(names):
        raise ValueError(f"split {text!r}: a split is named twice")
    keep, drop = [], []
    if at:
        patterns = [p.strip() for p in pattern_part.split(",")]
        if not all(p.removeprefix("!") for p in patterns):
            raise ValueError(f"split {text!r}: an empty name pattern after '@' (write e.g. train@0006R0 or "
                             f"train@!0006R0)")
        for p in patterns:
            (drop if p.startswith("!") else keep).append(p.removeprefix("!"))
    return SplitExpression(names, tuple(keep), tuple(drop))


class SplitSelection(Dataset):
    """Samples of one or more splits of one dataset, chosen by a split expression.

    Each part keeps its own transforms; ``classes``, ``palette``, ``ignore_index``,
    ``heads`` and ``box_classes`` are the first part's (the splits of one dataset agree),
    and ``files`` lists the chosen samples' ``(image, annotation)`` pairs in order.
    """

    def __init__(self, parts: Sequence[Dataset], expression: SplitExpression, source: str = "") -> None:
        self.parts = list(parts)
        self.expression = expression
        self.index: list[tuple[int, int]] = []  # (part, sample in part)
        for p, part in enumerate(self.parts):
            files = getattr(part, "files", None)
            if files is None:
                raise ValueError(f"{source}: {type(part).__name__} does not list its files, so split expressions "
                                 f"cannot select from it")
            self.index += [(p, i) for i, f in enumerate(files) if expression.selects(_stem(f))]
        if not self.index:
            raise ValueError(f"{source}: split {describe_split(expression)} selects no samples "
                             f"({sum(len(p) for p in self.parts)} in {'+'.join(expression.splits)})")
        first = self.parts[0]
        for name in ("classes", "palette", "ignore_index", "heads", "box_classes"):
            if hasattr(first, name):
                setattr(self, name, getattr(first, name))
        self.problems = [q for part in self.parts for q in getattr(part, "problems", [])]

    @property
    def files(self) -> list[Any]:
        return [self.parts[p].files[i] for p, i in self.index]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> Any:
        p, i = self.index[k]
        return self.parts[p][i]

    def load_raw(self, k: int) -> Any:
        """The sample as stored (no transforms), as every fcnkit dataset offers it."""
        p, i = self.index[k]
        return self.parts[p].load_raw(i)

    def __repr__(self) -> str:
        return f"SplitSelection({describe_split(self.expression)}: {len(self)} samples)"


def _stem(file: Any) -> str:
    return Path(file[0] if isinstance(file, tuple) else file).stem


def describe_split(expression: SplitExpression) -> str:
    text = "+".join(expression.splits)
    patterns = [*expression.keep, *(f"!{p}" for p in expression.drop)]
    return f"{text}@{','.join(patterns)}" if patterns else text


def select_split(build: Callable[[str], Dataset], split: str, source: str = "") -> Dataset:
    """The dataset a split expression names, from ``build(published_split)``: the format's
    own dataset for a plain split name, a ``SplitSelection`` otherwise."""
    expression = parse_split(split)
    if expression.is_plain:
        return build(expression.splits[0])
    return SplitSelection([build(s) for s in expression.splits], expression, source)


__all__ = ["SplitExpression", "SplitSelection", "describe_split", "parse_split", "select_split", "split_items"]
