"""A temporal filter for video: class probabilities averaged over frames where the picture holds still.

Frames segmented one by one flicker: a pixel near a class boundary flips between two
classes whose scores are close. An exponential moving average of the probabilities
(``p'_t = (1 - m) p_t + m p'_{t-1}``) settles such pixels; where the frame itself changed
(a moving object, the camera turning) the average would drag the old class along, so
pixels whose colour changed by more than ``gate`` take the current frame's probabilities
alone. It costs a few element-wise operations per pixel and class: no optical flow.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch

from .predictor import Prediction


class TemporalFilter:
    """Smooth (C, H, W) probabilities frame by frame; ``reset()`` between clips.

    ``momentum`` is the weight of the past (0 turns the filter off, 0.5 halves a one-frame
    flip's weight each frame); ``gate`` is the mean absolute RGB change (0-1) above which a
    pixel restarts from the current frame (1 never restarts).
    """

    def __init__(self, momentum: float = 0.5, gate: float = 0.1) -> None:
        if not (math.isfinite(momentum) and 0 <= momentum < 1):
            raise ValueError(f"temporal filter momentum must be in [0, 1), not {momentum}")
        if not (math.isfinite(gate) and 0 < gate <= 1):
            raise ValueError(f"temporal filter gate must be in (0, 1], not {gate}")
        self.momentum, self.gate = momentum, gate
        self._state: torch.Tensor | None = None  # (C, H, W) float32
        self._frame: torch.Tensor | None = None  # (H, W, 3) float32 in [0, 1]

    def reset(self) -> None:
        self._state = self._frame = None

    def __call__(self, probabilities: np.ndarray, frame: np.ndarray) -> np.ndarray:
        """The filtered (C, H, W) float32 probabilities of this frame ((H, W, 3) uint8 RGB)."""
        p = torch.from_numpy(np.asarray(probabilities, dtype=np.float32))
        f = torch.from_numpy(np.ascontiguousarray(frame)).float().div_(255)
        if self._state is None or self._state.shape != p.shape or self.momentum == 0:
            self._state, self._frame = p.clone(), f
            return p.numpy()
        still = (f - self._frame).abs_().mean(-1) <= self.gate  # (H, W): pixels whose colour held
        blended = torch.lerp(p, self._state, self.momentum)  # (1 - m) p + m past
        self._state = torch.where(still, blended, p)
        self._frame = f
        return self._state.numpy()

    def apply(self, prediction: Prediction, *, keep_probabilities: bool = False) -> Prediction:
        """``prediction`` (of a frame, made with probabilities) with its mask taken from the
        filtered probabilities; those are kept (float16) only if asked. Without probabilities, as it is."""
        if prediction.probabilities is None:
            return prediction
        p = self(prediction.probabilities, prediction.image)
        return replace(prediction, mask=p.argmax(0).astype(prediction.mask.dtype),
                       probabilities=p.astype(np.float16) if keep_probabilities else None)


__all__ = ["TemporalFilter"]
