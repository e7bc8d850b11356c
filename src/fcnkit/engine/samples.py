"""The scorer's numbers on a short list of in-memory images: optimisation budgets and the demo.

``fcnkit optimize`` and the demo compare a model with its optimised variants on the
same few dozen validation images many times over; loading them once and scoring each
variant's argmax masks here is cheaper than a DataLoader pass per variant. Masks only:
it is what the accuracy budget of an optimised segmentation model is measured on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..data import build_dataset, eval_transforms
from ..metrics import ConfusionMatrix
from ..nn import pixel_classes
from ..preprocessing import Preprocessing


@dataclass
class LabelledImage:
    """An evaluation image and its mask in memory: what optimize and the demo score variants on."""

    image: Tensor  # (1, 3, H, W) normalised
    mask: Tensor  # (1, H, W) int64, ignore index where unlabelled


def load_samples(data: str, split: str, preprocessing: Preprocessing, *, limit: int | None = None) -> list[LabelledImage]:
    """The first ``limit`` images of a dataset spec (``camvid:/path``), preprocessed for the model."""
    ds = build_dataset(data, split, eval_transforms(preprocessing))
    n = len(ds) if limit is None else min(limit, len(ds))
    if n == 0:
        raise ValueError(f"{data}: the {split} split has no images")
    out = []
    for i in range(n):
        image, target = ds[i]
        out.append(LabelledImage(image.as_subclass(Tensor).unsqueeze(0), target["mask"].as_subclass(Tensor).unsqueeze(0)))
    return out


def predict_all(run: Callable[[Tensor], dict[str, Tensor]], samples: list[LabelledImage]) -> list[Tensor]:
    """Each sample's (1, H, W) argmax classes under ``run`` (a segmenting model or any runner;
    an export with the argmax inside gives them as they are)."""
    with torch.inference_mode():
        return [pixel_classes(run(s.image)).cpu() for s in samples]  # each (1, H, W)


def mean_iu(preds: list[Tensor], samples: list[LabelledImage], num_classes: int) -> float:
    """Mean IU in percent, from one confusion matrix over all images."""
    cm = ConfusionMatrix(num_classes)
    for p, s in zip(preds, samples):
        cm.update(s.mask, p)
    return 100.0 * cm.compute()["mean_iu"]


def agreement(preds: list[Tensor], reference: list[Tensor]) -> float:
    """The fraction of pixels whose class equals the reference's (e.g. int8 vs fp32)."""
    same = sum(int((p == r).sum()) for p, r in zip(preds, reference))
    return same / sum(r.numel() for r in reference)


__all__ = ["LabelledImage", "agreement", "load_samples", "mean_iu", "predict_all"]
