"""Temporal stability of masks on video: how much of the picture changes class between frames.

Flicker is measured like the paper's metrics, from one histogram summed over the clip:
``T[a, b]`` counts pixels labelled ``a`` in one frame and ``b`` in the next. Overall
flicker is the share of pixels whose class changed (``1 - trace(T) / sum(T)``); a class's
flicker is one minus its *temporal IoU* (pixels it holds in both frames over pixels it
holds in either), so a pole that blinks on and off scores high even if it is small.
Computed on ground truth the same way, it says how much change the scene itself has:
a model's flicker should approach it, not zero.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .segmentation import confusion_matrix


class FlickerMeter:
    """Feed masks in frame order; ``scores()`` gives overall and per-class flicker.

    Pixels outside ``[0, num_classes)`` in either frame (an ignore label) are left out.
    ``reset()`` starts a new clip (the next frame is not compared with the last one); so
    does a change of frame size with ``resize_starts_clip`` (else it is an error).
    """

    def __init__(self, num_classes: int, *, resize_starts_clip: bool = False) -> None:
        self.num_classes, self.resize_starts_clip = num_classes, resize_starts_clip
        self.transitions = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self.pairs = 0
        self._previous: Tensor | None = None

    def reset(self) -> None:
        self._previous = None

    def update(self, mask: np.ndarray | Tensor) -> None:
        current = mask.long().cpu() if isinstance(mask, Tensor) else torch.from_numpy(np.array(mask, dtype=np.int64))
        previous, self._previous = self._previous, current
        if previous is None or (previous.shape != current.shape and self.resize_starts_clip):
            return
        if previous.shape != current.shape:
            raise ValueError(f"frame size changed from {tuple(previous.shape)} to {tuple(current.shape)} "
                             "within a clip (reset() between clips)")
        n = self.num_classes
        keep = (previous >= 0) & (previous < n) & (current >= 0) & (current < n)
        self.transitions += confusion_matrix(previous[keep], current[keep], n)
        self.pairs += 1

    def scores(self) -> dict:
        """``flicker`` (share of pixels that changed class between consecutive frames),
        ``class_flicker`` (1 - temporal IoU per class, NaN for a class never seen) and ``pairs``."""
        t = self.transitions.double()
        total, kept = float(t.sum()), t.diag()
        union = t.sum(0) + t.sum(1) - kept
        per_class = [float(1 - k / u) if u > 0 else math.nan for k, u in zip(kept.tolist(), union.tolist())]
        return {"flicker": 1 - float(kept.sum()) / total if total > 0 else math.nan,
                "class_flicker": per_class, "pairs": self.pairs}


__all__ = ["FlickerMeter"]
