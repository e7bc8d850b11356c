"""Numerical parity of an exported model against eager PyTorch.

An export is only done once it computes what the torch model computes, on every
output, matched by name: the same values up to float rounding, and for the class
scores (the ``seg`` output) the same per-pixel class (argmax) almost everywhere. Box
maps (heatmap, size, offset) are held to the value tolerance alone; an export with the
argmax inside (``labels``) to agreement alone, with the torch model's argmax.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..heads import LABELS_OUTPUT, SEG_OUTPUT, output_names
from ..models.spec import spec_of
from ..nn import class_map

MIN_AGREEMENT = 0.999
DEFAULT_SIZES = ((224, 288), (201, 263))  # one multiple of 32, one not (exercises the padding)


@dataclass(frozen=True)
class Parity:
    batch: int
    size: tuple[int, int]
    max_abs_diff: float
    logit_scale: float  # max |value| of the reference, to read the diff against
    agreement: float  # fraction of pixels whose argmax class matches (NaN: not class scores)
    output: str

    def __str__(self) -> str:
        agree = "" if math.isnan(self.agreement) else f"argmax agreement {100 * self.agreement:.3f}%"
        if math.isnan(self.max_abs_diff):  # classes: nothing to subtract
            return f"{self.output} batch {self.batch} {self.size[0]}x{self.size[1]}: {agree}"
        return (f"{self.output} batch {self.batch} {self.size[0]}x{self.size[1]}: max |diff| "
                f"{self.max_abs_diff:.3g} (values up to {self.logit_scale:.3g}){', ' + agree if agree else ''}")


def sample_input(model: nn.Module, batch: int, size: tuple[int, int], *, seed: int = 0) -> Tensor:
    """A reproducible normalised batch: smooth random colours pushed through the model's preprocessing."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    coarse = torch.rand(batch, 3, max(1, h // 8), max(1, w // 8), generator=g)  # (N, 3, h/8, w/8)
    img = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    img = (img + 0.1 * torch.rand(batch, 3, h, w, generator=g)).clamp(0, 1)  # (N, 3, H, W) in [0, 1]
    return spec_of(model).preprocessing(img)


def compare(reference: Tensor, candidate: Tensor, batch: int, size: tuple[int, int], output: str) -> Parity:
    """One output of the candidate against the reference's (argmax agreement for class scores)."""
    if reference.shape != candidate.shape:
        raise RuntimeError(f"exported model returned {output} of shape {tuple(candidate.shape)}, torch "
                           f"{tuple(reference.shape)}")
    if output == LABELS_OUTPUT:  # (N, H, W) classes
        agree = float((reference == candidate).float().mean())
        return Parity(batch, size, math.nan, math.nan, agree, output)
    diff = float((reference - candidate).abs().max())
    agree = (float((reference.argmax(1) == candidate.argmax(1)).float().mean()) if output == SEG_OUTPUT
             else math.nan)
    return Parity(batch, size, diff, float(reference.abs().max()), agree, output)


def check_parity(model: nn.Module, candidate: Callable[[Tensor], Mapping[str, Tensor]], *,
                 sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES, min_agreement: float = MIN_AGREEMENT,
                 rtol: float = 1e-3, name: str = "export", output: str = "logits") -> list[Parity]:
    """Run ``model`` and ``candidate`` at each size (batch 1, 2, 1, ...) and compare each of the
    spec's outputs by name; RuntimeError on a mismatch. ``output="labels"``: the candidate gives
    classes (``LABELS_OUTPUT``), compared with the argmax of the model's class scores.

    Passing needs, on every output at every size, max |diff| <= ``rtol * max(1, max
    |value|)``, and for class scores argmax agreement >= ``min_agreement``.
    """
    results = []
    model = model.eval()
    outputs = output_names(spec_of(model).heads, output)
    device = next(model.parameters()).device
    for i, size in enumerate(sizes):
        batch = 1 + i % 2  # alternate so a fixed batch dimension would be caught
        x = sample_input(model, batch, size, seed=i)
        with torch.no_grad():
            ref = dict(model(x.to(device)))
        if output == "labels":
            ref[LABELS_OUTPUT] = class_map(ref.pop(SEG_OUTPUT))
        out = candidate(x)
        if set(ref) != set(outputs) or set(out) != set(outputs):
            raise RuntimeError(f"{name} returns outputs {sorted(out)}, torch {sorted(ref)}; the spec names "
                               f"{list(outputs)}")
        results += [compare(ref[k].float().cpu(), out[k].float().cpu(), batch, size, k) for k in outputs]
    bad = [r for r in results if r.agreement < min_agreement or r.max_abs_diff > rtol * max(1.0, r.logit_scale)]
    if bad:
        lines = "\n  ".join(str(r) for r in results)
        raise RuntimeError(f"{name} does not match eager PyTorch (need argmax agreement >= "
                           f"{100 * min_agreement:.1f}% and |diff| <= {rtol:g} x logit scale):\n  {lines}")
    return results


__all__ = ["Parity", "check_parity", "compare", "sample_input", "DEFAULT_SIZES", "MIN_AGREEMENT"]
