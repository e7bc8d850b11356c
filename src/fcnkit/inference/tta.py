"""Test-time augmentation: horizontal flips and rescaled copies, probabilities averaged.

Averaging probabilities (not logits) is the usual rule: each view votes with a
calibrated distribution. The result is returned as log-probabilities so that it can
be blended across tiles and soft-maxed again like plain logits (softmax of log p is p).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def augmented_logits(run: Callable[[Tensor], Tensor], x: Tensor, *, scales: Sequence[float] = (1.0,),
                     flip: bool = False) -> Tensor:
    """log(mean over views of softmax(run(view))) for normalised ``x`` (N, 3, H, W) -> (N, C, H, W).

    A view is ``x`` resized by a scale (bilinear; antialiased when shrinking) and
    optionally mirrored; its logits are mirrored back and resized to (H, W) first.
    """
    h, w = x.shape[-2:]
    total: Tensor | None = None
    views = 0
    for s in scales:
        size = (max(1, round(h * s)), max(1, round(w * s)))
        xs = x if size == (h, w) else F.interpolate(x, size=size, mode="bilinear", align_corners=False,
                                                    antialias=s < 1)  # (N, 3, sH, sW)
        for mirrored in ((False, True) if flip else (False,)):
            logits = run(xs.flip(-1) if mirrored else xs)  # (N, C, sH, sW)
            if mirrored:
                logits = logits.flip(-1)
            if size != (h, w):
                logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)  # (N, C, H, W)
            probs = logits.float().softmax(1)
            total = probs if total is None else total.add_(probs)
            views += 1
    if total is None:
        raise ValueError("test-time augmentation needs at least one scale")
    return total.div_(views).clamp_min_(torch.finfo(torch.float32).tiny).log_()
