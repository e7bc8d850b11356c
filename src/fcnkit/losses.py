"""Per-pixel losses for dense prediction, all honouring the ignore index.

- ``ce``: cross-entropy, the paper's loss. ``reduction="sum"`` is the reference
  recipe's unnormalised sum over pixels (hence its tiny 1e-10 learning rate);
  ``"mean"`` averages over labelled pixels (weighted by class weights if given).
- ``focal``: cross-entropy scaled by ``(1 - p_t) ** gamma`` (Lin et al. 2017), which
  shifts the gradient to hard pixels -- thin, rare classes such as CamVid's poles.
- ``ohem``: cross-entropy over only the hardest ``ohem_fraction`` of the labelled pixels
  (online hard example mining, as BiSeNet and PSPNet train): easy road and sky pixels
  stop dominating the mean without re-weighting whole classes.
- ``lovasz``: the Lovász-softmax surrogate of the Jaccard loss (Berman et al. 2018),
  which optimises the IoU the benchmark reports. ``ce+lovasz`` sums the two.

Class weights typically come from ``fcnkit data stats`` (median-frequency balancing).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOSSES = ("ce", "focal", "ohem", "lovasz", "ce+lovasz")


class SegmentationLoss(nn.Module):
    """``loss(logits (N, C, H, W), target (N, H, W) int64) -> scalar``; computed in fp32."""

    def __init__(self, name: str = "ce", *, ignore_index: int = 255, reduction: str = "mean",
                 class_weights: Tensor | None = None, focal_gamma: float = 2.0, ohem_fraction: float = 0.25) -> None:
        super().__init__()
        if name not in LOSSES:
            raise ValueError(f"unknown loss {name!r}; choose from {LOSSES}")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', not {reduction!r}")
        if reduction == "sum" and "lovasz" in name:
            raise ValueError("the Lovász loss is a mean over classes; use reduction='mean' with it")
        if not 0 < ohem_fraction <= 1:
            raise ValueError(f"ohem_fraction must be in (0, 1], not {ohem_fraction}")
        self.name, self.ignore_index, self.reduction, self.focal_gamma = name, ignore_index, reduction, focal_gamma
        self.ohem_fraction = ohem_fraction
        self.register_buffer("class_weights", None if class_weights is None else class_weights.float())

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        logits = logits.float()  # autocast may hand us bf16; losses want fp32 sums
        if self.name == "ce":
            return F.cross_entropy(logits, target, weight=self.class_weights, ignore_index=self.ignore_index,
                                   reduction=self.reduction)
        if self.name == "focal":
            return focal_loss(logits, target, gamma=self.focal_gamma, weight=self.class_weights,
                              ignore_index=self.ignore_index, reduction=self.reduction)
        if self.name == "ohem":
            return ohem_cross_entropy(logits, target, fraction=self.ohem_fraction, weight=self.class_weights,
                                      ignore_index=self.ignore_index, reduction=self.reduction)
        lov = lovasz_softmax(logits.softmax(1), target, ignore_index=self.ignore_index)
        if self.name == "lovasz":
            return lov
        return lov + F.cross_entropy(logits, target, weight=self.class_weights, ignore_index=self.ignore_index)


def focal_loss(logits: Tensor, target: Tensor, *, gamma: float = 2.0, weight: Tensor | None = None,
               ignore_index: int = 255, reduction: str = "mean") -> Tensor:
    """Multi-class focal loss; ``gamma=0`` is (weighted) cross-entropy exactly.

    "mean" divides by the summed class weights of labelled pixels, as
    ``F.cross_entropy`` does, so the two agree at ``gamma=0``.
    """
    valid = target != ignore_index  # (N, H, W)
    t = target.where(valid, torch.zeros_like(target))
    logp = logits.log_softmax(1).gather(1, t.unsqueeze(1)).squeeze(1)  # (N, H, W): log p_t
    w = weight[t] if weight is not None else torch.ones_like(logp)
    loss = -w * (1 - logp.exp()).pow(gamma) * logp
    loss, w = loss[valid], w[valid]
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / w.sum().clamp_min(torch.finfo(w.dtype).tiny)


def ohem_cross_entropy(logits: Tensor, target: Tensor, *, fraction: float = 0.25, weight: Tensor | None = None,
                       ignore_index: int = 255, reduction: str = "mean") -> Tensor:
    """Cross-entropy of the ``ceil(fraction * P)`` labelled pixels with the largest loss
    (P labelled pixels in the batch); ``fraction=1`` is plain (weighted) cross-entropy.

    "mean" divides by the summed class weights of the kept pixels, as ``F.cross_entropy``
    does over all of them."""
    per_pixel = F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, reduction="none")
    valid = target != ignore_index
    losses = per_pixel[valid]  # (P,)
    if losses.numel() == 0:
        return logits.sum() * 0.0
    k = max(1, math.ceil(fraction * losses.numel()))
    kept, order = losses.topk(k, sorted=False) if k < losses.numel() else (losses, None)
    if reduction == "sum":
        return kept.sum()
    if weight is None:
        return kept.mean()
    w = weight[target[valid]]
    w = w if order is None else w[order]
    return kept.sum() / w.sum().clamp_min(torch.finfo(w.dtype).tiny)


def lovasz_softmax(probs: Tensor, target: Tensor, *, ignore_index: int = 255) -> Tensor:
    """Lovász-softmax over all labelled pixels of the batch, averaged over the classes
    present in the ground truth (Berman et al. 2018, eq. 9-12).

    For one-hot ``probs`` it equals the mean over present classes of ``1 - IoU_c``.
    """
    c = probs.shape[1]
    probs = probs.movedim(1, -1).reshape(-1, c)  # (P, C)
    target = target.reshape(-1)  # (P,)
    valid = target != ignore_index
    probs, target = probs[valid], target[valid]
    losses = []
    for k in target.unique().tolist():
        fg = (target == k).float()  # (P,)
        errors = (fg - probs[:, k]).abs()
        errors, order = errors.sort(descending=True)
        losses.append(torch.dot(errors, _lovasz_grad(fg[order])))
    if not losses:  # nothing labelled: a zero that still carries a graph
        return probs.sum() * 0.0
    return torch.stack(losses).mean()


def _lovasz_grad(fg_sorted: Tensor) -> Tensor:
    """Gradient of the Jaccard loss' Lovász extension at errors sorted descending."""
    gts = fg_sorted.sum()
    intersection = gts - fg_sorted.cumsum(0)
    union = gts + (1 - fg_sorted).cumsum(0)
    jaccard = 1 - intersection / union
    jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def load_class_weights(path: str | Path, num_classes: int) -> Tensor:
    """Class weights from a ``fcnkit data stats`` JSON file (or any JSON with a
    ``class_weights`` list, or a bare list), checked against ``num_classes``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such class-weights file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    weights = data
    if isinstance(data, dict):
        for key in ("class_weights", "median_frequency_weights", "weights"):
            if key in data:
                weights = data[key]
                break
        else:
            raise ValueError(f"{path}: no 'class_weights' entry (found keys {sorted(data)[:10]})")
    if isinstance(weights, dict):  # {"Sky": 0.3, ...} in class order
        weights = list(weights.values())
    if not isinstance(weights, list) or not all(isinstance(w, (int, float)) for w in weights):
        raise ValueError(f"{path}: class weights must be a list of numbers")
    if len(weights) != num_classes:
        raise ValueError(f"{path}: {len(weights)} class weights for a {num_classes}-class model; use class_weights: "
                         f"auto (counted on your training data) or write a file for your data with fcnkit data "
                         f"stats PATH --out weights.json")
    w = torch.tensor(weights, dtype=torch.float32)
    if not torch.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"{path}: class weights must be finite and >= 0, got {weights}")
    if not (w > 0).any():
        raise ValueError(f"{path}: every class weight is 0, so the loss is 0 and training would learn nothing "
                         f"(was the data all ignore? see fcnkit data check)")
    return w


__all__ = ["LOSSES", "SegmentationLoss", "focal_loss", "lovasz_softmax", "load_class_weights"]
