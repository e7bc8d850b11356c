"""Numerical parity of an exported model against eager PyTorch.

An export is only done once it computes what the torch model computes: same logits
up to float rounding, and the same per-pixel class (argmax) almost everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

MIN_AGREEMENT = 0.999
DEFAULT_SIZES = ((224, 288), (201, 263))  # one multiple of 32, one not (exercises the padding)


@dataclass(frozen=True)
class Parity:
    batch: int
    size: tuple[int, int]
    max_abs_diff: float
    logit_scale: float  # max |logit| of the reference, to read the diff against
    agreement: float  # fraction of pixels whose argmax class matches

    def __str__(self) -> str:
        return (f"batch {self.batch} {self.size[0]}x{self.size[1]}: max |diff| {self.max_abs_diff:.3g} "
                f"(logits up to {self.logit_scale:.3g}), argmax agreement {100 * self.agreement:.3f}%")


def sample_input(model: nn.Module, batch: int, size: tuple[int, int], *, seed: int = 0) -> Tensor:
    """A reproducible normalised batch: smooth random colours pushed through the model's preprocessing."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    coarse = torch.rand(batch, 3, max(1, h // 8), max(1, w // 8), generator=g)  # (N, 3, h/8, w/8)
    img = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    img = (img + 0.1 * torch.rand(batch, 3, h, w, generator=g)).clamp(0, 1)  # (N, 3, H, W) in [0, 1]
    return model.preprocessing(img)


def compare(reference: Tensor, candidate: Tensor, batch: int, size: tuple[int, int]) -> Parity:
    if reference.shape != candidate.shape:
        raise RuntimeError(f"exported model returned {tuple(candidate.shape)}, torch {tuple(reference.shape)}")
    diff = float((reference - candidate).abs().max())
    agree = float((reference.argmax(1) == candidate.argmax(1)).float().mean())
    return Parity(batch, size, diff, float(reference.abs().max()), agree)


def check_parity(model: nn.Module, candidate: Callable[[Tensor], Tensor], *,
                 sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES, min_agreement: float = MIN_AGREEMENT,
                 rtol: float = 1e-3, name: str = "export") -> list[Parity]:
    """Run ``model`` and ``candidate`` at each size (batch 1, 2, 1, ...); RuntimeError on a mismatch.

    Passing needs argmax agreement >= ``min_agreement`` and max |diff| <=
    ``rtol * max(1, max |logit|)`` at every size.
    """
    results = []
    model = model.eval()
    device = next(model.parameters()).device
    for i, size in enumerate(sizes):
        batch = 1 + i % 2  # alternate so a fixed batch dimension would be caught
        x = sample_input(model, batch, size, seed=i)
        with torch.no_grad():
            ref = model(x.to(device)).float().cpu()
        out = candidate(x).float().cpu()
        results.append(compare(ref, out, batch, size))
    bad = [r for r in results if r.agreement < min_agreement or r.max_abs_diff > rtol * max(1.0, r.logit_scale)]
    if bad:
        lines = "\n  ".join(str(r) for r in results)
        raise RuntimeError(f"{name} does not match eager PyTorch (need argmax agreement >= "
                           f"{100 * min_agreement:.1f}% and |diff| <= {rtol:g} x logit scale):\n  {lines}")
    return results


__all__ = ["Parity", "check_parity", "compare", "sample_input", "DEFAULT_SIZES", "MIN_AGREEMENT"]
