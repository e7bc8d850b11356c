"""A temporal filter for video: class probabilities averaged over frames, following the motion.

Frames segmented one by one flicker: a pixel near a class boundary flips between two
classes whose scores are close. An exponential moving average of the probabilities
(``p'_t = (1 - m) p_t + m p'_{t-1}``) settles such pixels. From a moving camera the
average taken in place drags the old class along edges, so with ``flow`` the past is
first warped to the current frame by dense optical flow (OpenCV's DIS, a few ms at
480x360 on one core): the average then follows the street, and can be stronger. Where
the picture does not match even so (an occlusion, a flow error: the warped previous
frame's colour differs from this frame's by more than ``gate``) or the past falls
outside the frame, a pixel takes the current frame's probabilities alone.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import lru_cache

import numpy as np
import torch

from ..extras import require
from ..nn import class_map
from .predictor import Prediction

FLOW_MAX_SIDE = 512  # flow is estimated on frames scaled down to this (then scaled up): enough for masks


def _opencv():
    """OpenCV, from the ``video`` extra: optical flow and remapping."""
    require("video", "cv2")
    import cv2

    return cv2


@lru_cache(maxsize=4)
def _pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(ys, xs) float32 pixel coordinates of an (h, w) frame: the same for every frame of a clip."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ys.flags.writeable = xs.flags.writeable = False
    return ys, xs


class TemporalFilter:
    """Smooth (C, H, W) probabilities frame by frame; ``reset()`` between clips.

    ``momentum`` is the weight of the past (0 turns the filter off, 0.5 halves a one-frame
    flip's weight each frame); ``gate`` is the mean absolute RGB change (0-1) above which a
    pixel restarts from the current frame (1 never restarts); ``flow`` warps the past by
    optical flow first (needs OpenCV: the ``video`` extra).
    """

    def __init__(self, momentum: float = 0.5, gate: float = 0.1, *, flow: bool = False) -> None:
        if not (math.isfinite(momentum) and 0 <= momentum < 1):
            raise ValueError(f"temporal filter momentum must be in [0, 1), not {momentum}")
        if not (math.isfinite(gate) and 0 < gate <= 1):
            raise ValueError(f"temporal filter gate must be in (0, 1], not {gate}")
        if flow:
            _opencv()  # refused now, not at the first frame
        self.momentum, self.gate, self.flow = momentum, gate, flow
        self._state: np.ndarray | None = None  # (C, H, W) float32
        self._frame: np.ndarray | None = None  # (H, W, 3) uint8
        self._gray: np.ndarray | None = None  # the last frame in grey at flow size (uint8), with flow
        self._dis = None  # OpenCV's DIS optical flow, made at first use

    def __repr__(self) -> str:
        return f"TemporalFilter(momentum={self.momentum:g}, gate={self.gate:g}, flow={self.flow})"

    def reset(self) -> None:
        self._state = self._frame = self._gray = None

    def __call__(self, probabilities: np.ndarray, frame: np.ndarray) -> np.ndarray:
        """The filtered (C, H, W) float32 probabilities of this frame ((H, W, 3) uint8 RGB)."""
        p = np.asarray(probabilities, dtype=np.float32)
        frame = np.array(frame, dtype=np.uint8, order="C")  # a copy: kept as the next frame's past
        gray = self._flow_gray(frame) if self.flow else None
        if self._state is None or self._state.shape != p.shape or self.momentum == 0:
            self._state, self._frame, self._gray = p.copy(), frame, gray
            return p
        past, past_frame, inside = self._state, self._frame, None
        if gray is not None:
            past, past_frame, inside = self._warp(self._backward_flow(gray), past, past_frame)
        d = np.abs(frame.astype(np.int16) - past_frame)  # (H, W, 3); summed plane by plane: fast
        still = (d[..., 0] + d[..., 1] + d[..., 2]) <= 3 * 255 * self.gate  # mean RGB change within the gate
        if inside is not None:
            still &= inside
        state = past - p
        state *= self.momentum
        state += p  # (1 - m) p + m past
        np.copyto(state, p, where=~still)  # where the picture changed: this frame alone
        self._state, self._frame, self._gray = state, frame, gray
        return state

    def _flow_gray(self, frame: np.ndarray) -> np.ndarray:
        cv2 = _opencv()
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        scale = FLOW_MAX_SIDE / max(gray.shape)
        if scale < 1:
            size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
            gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        return gray

    def _backward_flow(self, gray: np.ndarray) -> np.ndarray:
        """(h, w, 2) flow at flow size: where each pixel of this frame was in the last one (the
        last frame's grey image is kept with the state, so it has this frame's size)."""
        cv2 = _opencv()
        if self._dis is None:
            self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        return self._dis.calc(gray, self._gray, None)

    @staticmethod
    def _warp(flow: np.ndarray, past: np.ndarray, past_frame: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The past probabilities and frame sampled (bilinear, OpenCV's remap: several times
        faster than ``grid_sample`` on CPU) where this frame's pixels were, and which pixels
        came from inside the last frame."""
        cv2 = _opencv()
        c, h, w = past.shape
        if flow.shape[:2] != (h, w):  # estimated at a smaller size: scale up, in pixels of this size
            fh, fw = flow.shape[:2]
            flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR) * np.array([w / fw, h / fh], np.float32)
        ys, xs = _pixel_grid(h, w)
        x, y = xs + flow[..., 0], ys + flow[..., 1]
        inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
        warped = np.empty_like(past)
        for k in range(c):  # one plane at a time: remap takes at most 4 interleaved channels
            cv2.remap(past[k], x, y, cv2.INTER_LINEAR, dst=warped[k], borderMode=cv2.BORDER_REPLICATE)
        frame = cv2.remap(past_frame, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return warped, frame, inside

    def apply(self, prediction: Prediction, *, keep_probabilities: bool = False) -> Prediction:
        """``prediction`` (of a frame, made with probabilities) with its mask taken from the
        filtered probabilities; those are kept (float16) only if asked. Without probabilities, as it is."""
        if prediction.probabilities is None:
            return prediction
        p = self(prediction.probabilities, prediction.image)
        mask = class_map(torch.from_numpy(p), 0).numpy()  # (H, W)
        return replace(prediction, mask=mask.astype(prediction.mask.dtype),
                       probabilities=p.astype(np.float16) if keep_probabilities else None)


__all__ = ["TemporalFilter"]
