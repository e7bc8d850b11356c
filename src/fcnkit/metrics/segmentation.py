"""The paper's four segmentation metrics, all from one confusion matrix.

Long et al. (2015, sec. 5) report pixel accuracy, mean accuracy, mean IU and
frequency-weighted IU computed from a single histogram ``hist[gt, pred]`` summed
over the *whole dataset* (not averaged per image). Train-time validation and
``fcnkit eval`` both use :class:`ConfusionMatrix`, so the numbers always agree.

NaN rules (REFERENCE.md): a class absent from ground truth *and* prediction has
undefined IU and accuracy and is left out of the means; a class absent from ground
truth but predicted has IU 0, which counts.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor


def confusion_matrix(gt: Tensor, pred: Tensor, num_classes: int) -> Tensor:
    """``hist[g, p]`` = number of pixels with ground truth ``g`` predicted as ``p``.

    ``gt`` and ``pred`` are integer tensors of the same shape; pixels whose ground
    truth is outside ``[0, num_classes)`` (e.g. the ignore index 255) are skipped.
    Returns an int64 (num_classes, num_classes) tensor on ``gt``'s device.
    """
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {tuple(gt.shape)} and prediction {tuple(pred.shape)} differ in shape")
    gt, pred = gt.reshape(-1).long(), pred.reshape(-1).long()  # (P,)
    keep = (gt >= 0) & (gt < num_classes)
    if (pred[keep] < 0).any() or (pred[keep] >= num_classes).any():
        raise ValueError(f"predictions must be class indices in [0, {num_classes})")
    flat = gt[keep] * num_classes + pred[keep]
    return torch.bincount(flat, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def scores(hist: Tensor) -> dict:
    """Pixel acc, mean acc, mean IU, fw IU, and per-class accuracy / IU from ``hist[gt, pred]``.

    Per-class values are lists with ``nan`` where undefined (class absent from ground
    truth, and for IU also absent from prediction). Means are NaN-means.
    """
    h = hist.double().cpu()
    diag, rows, cols = h.diag(), h.sum(1), h.sum(0)
    total = h.sum()
    acc_c = diag / rows  # nan where the class never occurs in ground truth
    iu_c = diag / (rows + cols - diag)  # nan where neither occurs; 0 if only predicted
    freq = rows / total
    present = rows > 0
    return {
        "pixel_acc": float(diag.sum() / total) if total > 0 else math.nan,
        "mean_acc": _nanmean(acc_c),
        "mean_iu": _nanmean(iu_c),
        "fw_iu": float((freq[present] * iu_c[present]).sum()) if total > 0 else math.nan,
        "class_acc": acc_c.tolist(),
        "class_iu": iu_c.tolist(),
        "pixels": int(total),
    }


def _nanmean(x: Tensor) -> float:
    x = x[~x.isnan()]
    return float(x.mean()) if x.numel() else math.nan


class ConfusionMatrix:
    """Accumulates ``hist[gt, pred]`` batch by batch; reduce across ranks; score once.

    >>> cm = ConfusionMatrix(num_classes=11)
    >>> cm.update(masks, logits.argmax(1))   # any matching shapes; 255 is skipped
    >>> cm.all_reduce()                      # sum over DDP ranks (no-op otherwise)
    >>> cm.compute()["mean_iu"]
    """

    def __init__(self, num_classes: int, *, device: torch.device | str = "cpu") -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, not {num_classes}")
        self.num_classes = num_classes
        self.hist = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, gt: Tensor, pred: Tensor) -> None:
        self.hist += confusion_matrix(gt.to(self.hist.device), pred.to(self.hist.device), self.num_classes)

    def all_reduce(self) -> None:
        """Sum the matrices of all processes in the default group (DDP validation)."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(self.hist, op=dist.ReduceOp.SUM)

    def compute(self) -> dict:
        return scores(self.hist)


__all__ = ["ConfusionMatrix", "confusion_matrix", "scores"]
