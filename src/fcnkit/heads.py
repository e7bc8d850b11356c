"""What a model predicts and what a dataset labels, as one small vocabulary.

A model has heads and a dataset has labels of the same two kinds: ``SEG`` (a class per
pixel) and ``BOXES`` (objects as boxes). Code asks ``SEG in spec.heads``; the words
"segmentation", "detection" and "joint" are only names for people (logs, reports,
``fcnkit models``), made here and nowhere else. It sits at the bottom of the package
because data, models and everything above them share it.
"""

from __future__ import annotations

from collections.abc import Iterable

SEG = "seg"
BOXES = "boxes"
HEADS = (SEG, BOXES)
BOX_OUTPUTS = ("heatmap", "size", "offset")  # the box head's dense maps, in this order
SEG_OUTPUT = "seg"  # the segmentation head's (N, K, H, W) logits
LABELS_OUTPUT = "labels"  # in place of SEG_OUTPUT in exports with the argmax inside: (N, H, W) uint8 classes
OUTPUT_KINDS = ("logits", "labels")  # what an export gives for the SEG head: class scores, or classes

_NAMES = {frozenset({SEG}): "segmentation", frozenset({BOXES}): "detection", frozenset({SEG, BOXES}): "joint"}


def heads_of(names: Iterable[str]) -> frozenset[str]:
    """A checked set of heads: a non-empty subset of ``HEADS``."""
    heads = frozenset(names)
    if not heads or not heads <= set(HEADS):
        raise ValueError(f"heads must be a non-empty subset of {HEADS}, not {sorted(heads)}")
    return heads


def task_name(heads: Iterable[str]) -> str:
    """``{"seg"}`` -> "segmentation", ``{"boxes"}`` -> "detection", both -> "joint"."""
    return _NAMES[heads_of(heads)]


def output_names(heads: Iterable[str], kind: str = "logits") -> tuple[str, ...]:
    """The keys of a model's ``forward`` dict, in the order exports list their outputs;
    ``kind="labels"``: those of an export with the argmax inside (``LABELS_OUTPUT`` for the SEG head)."""
    heads = heads_of(heads)
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"output must be one of {', '.join(OUTPUT_KINDS)}, not {kind!r}")
    seg = SEG_OUTPUT if kind == "logits" else LABELS_OUTPUT
    return ((seg,) if SEG in heads else ()) + (BOX_OUTPUTS if BOXES in heads else ())


__all__ = ["BOXES", "BOX_OUTPUTS", "HEADS", "LABELS_OUTPUT", "OUTPUT_KINDS", "SEG", "SEG_OUTPUT", "heads_of",
           "output_names", "task_name"]
