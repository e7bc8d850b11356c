"""Test-time augmentation: horizontal flips and rescaled copies, probabilities averaged.

Averaging probabilities (not logits) is the usual rule: each view votes with a
calibrated distribution. The result is returned as log-probabilities so that it can
be blended across tiles and soft-maxed again like plain logits (softmax of log p is p).
Box maps take the flip only, as in CenterNet's flip test: the centre probabilities and
log-sizes of both views are averaged, the offsets are the plain view's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..heads import BOXES, SEG_OUTPUT
from ..models.spec import spec_of

DEFAULT_TTA_SCALES = (0.75, 1.0, 1.25)  # with flip: what --tta means, in predict and in eval


def tta_views(tta: bool = False, scales: Sequence[float] | None = None, flip: bool = False
              ) -> tuple[tuple[float, ...], bool]:
    """(scales, flip) from the options a user gives: ``tta`` means flip and
    ``DEFAULT_TTA_SCALES`` unless scales are given; no options mean one plain view."""
    scales = tuple(float(s) for s in scales) if scales else (1.0,)
    if tta:
        flip = True
        scales = DEFAULT_TTA_SCALES if scales == (1.0,) else scales
    if not scales or any(not s > 0 for s in scales):
        raise ValueError(f"TTA scales must be positive, got {scales}")
    return scales, flip


class Augmented:
    """A segmentation runner whose every call averages the TTA views of its input
    (``augmented_logits``): what ``fcnkit eval --tta`` scores, through the same evaluator.
    It carries the runner's ``spec``; other attributes are the runner's."""

    def __init__(self, runner: Any, *, scales: Sequence[float], flip: bool) -> None:
        self.spec = spec_of(runner)
        self.runner, self.scales, self.flip = runner, tuple(scales), flip
        if BOXES in self.spec.heads and self.scales != (1.0,):
            raise ValueError(f"a {self.spec.task} model's box maps are averaged over the horizontal flip only, "
                             f"not over scales {list(self.scales)}: use --flip instead of --tta/--scales")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.runner, name)

    def __call__(self, x: Tensor) -> dict[str, Tensor]:
        if BOXES in self.spec.heads:
            return flip_averaged(self.runner, x, multiple=self.spec.pad_multiple) if self.flip else self.runner(x)
        return {SEG_OUTPUT: augmented_logits(self.runner, x, scales=self.scales, flip=self.flip,
                                             multiple=self.spec.pad_multiple)}

    def eval(self) -> "Augmented":
        self.runner.eval()
        return self

    def train(self, mode: bool = True) -> "Augmented":
        self.runner.train(mode)
        return self


def _mirrored(run: Callable[[Tensor], Mapping[str, Tensor]], x: Tensor, multiple: int) -> dict[str, Tensor]:
    """``run``'s outputs for ``x`` mirrored, mirrored back onto ``x``'s grid.

    The mirrored image is padded on the left to the encoder's multiple, so each output
    cell covers the same pixels as the plain view's (which the model pads on the right);
    mirrored back, the padding's cells are on the right and are cut to the plain
    output's width (``ceil(W / stride)`` for maps at a stride, ``W`` for logits)."""
    w = x.shape[-1]
    pad = (-w) % multiple
    outputs = run(F.pad(x.flip(-1), (pad, 0)))
    back = {}
    for name, out in outputs.items():
        stride = (w + pad) // out.shape[-1]
        back[name] = out.flip(-1)[..., :-(-w // stride)]
    return back


def flip_averaged(run: Callable[[Tensor], Mapping[str, Tensor]], x: Tensor, *, multiple: int = 1
                  ) -> dict[str, Tensor]:
    """A box (or joint) model's outputs for ``x`` averaged with its mirrored view's.

    ``heatmap``: the logit of the mean centre probability; ``size``: the mean log-size
    (a horizontal flip keeps width and height); ``offset``: the plain view's (a cell's
    offset does not mirror onto the same cell); ``seg``: log of the mean softmax."""
    plain, mirrored = dict(run(x)), _mirrored(run, x, multiple)
    heat = (plain["heatmap"].float().sigmoid() + mirrored["heatmap"].float().sigmoid()) / 2
    out = {"heatmap": heat.logit(eps=1e-6), "size": (plain["size"].float() + mirrored["size"].float()) / 2,
           "offset": plain["offset"]}
    if SEG_OUTPUT in plain:
        out[SEG_OUTPUT] = _log_mean(plain[SEG_OUTPUT].float().softmax(1) + mirrored[SEG_OUTPUT].float().softmax(1), 2)
    return out


def _log_mean(total: Tensor, views: int) -> Tensor:
    """log(``total`` / ``views``) in place, for a sum of the views' class probabilities (no log 0)."""
    return total.div_(views).clamp_min_(torch.finfo(torch.float32).tiny).log_()


def augmented_logits(run: Callable[[Tensor], Mapping[str, Tensor]], x: Tensor, *, scales: Sequence[float] = (1.0,),
                     flip: bool = False, multiple: int = 1) -> Tensor:
    """log(mean over views of softmax(run(view)["seg"])) for normalised ``x`` (N, 3, H, W) -> (N, C, H, W).

    A view is ``x`` resized by a scale (bilinear; antialiased when shrinking) and
    optionally mirrored; its logits are mirrored back and resized to (H, W) first. ``run`` is
    a model or runner (its outputs a dict; only the segmentation logits are averaged).
    ``multiple`` is the encoder stride the model pads its input to (see below).

    Rescaled views of a tile share the rescaled whole image's pooling grid only if the
    tile corner times the scale is a multiple of the stride; the predictor aligns tiles
    for that (``tiling.grid_align``).
    """
    h, w = x.shape[-2:]
    total: Tensor | None = None
    views = 0
    for s in scales:
        size = (max(1, round(h * s)), max(1, round(w * s)))
        xs = x if size == (h, w) else F.interpolate(x, size=size, mode="bilinear", align_corners=False,
                                                    antialias=s < 1)  # (N, 3, sH, sW)
        for mirrored in ((False, True) if flip else (False,)):
            if mirrored:
                # the pooling grid sits exactly where the unmirrored view's does (_mirrored), so a
                # tile's mirrored view agrees with the whole image's
                logits = _mirrored(run, xs, multiple)[SEG_OUTPUT]  # (N, C, sH, sW)
            else:
                logits = run(xs)[SEG_OUTPUT]  # (N, C, sH, sW)
            if size != (h, w):
                logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)  # (N, C, H, W)
            probs = logits.float().softmax(1)
            total = probs if total is None else total.add_(probs)
            views += 1
    if total is None:
        raise ValueError("test-time augmentation needs at least one scale")
    return _log_mean(total, views)
