"""KITTI road benchmark metrics from road-probability maps: MaxF, AP, best threshold.

The KITTI road devkit (used by KittiSeg / MultiNet) sweeps 256 thresholds
``t = 0, 1/255, ..., 1`` over the road probability, counts TP/FP/FN over all
valid pixels of all images, and reports the maximum F1 over thresholds (MaxF),
the threshold that attains it, and the PASCAL 11-point interpolated average
precision. Counting per threshold reduces to one histogram of probabilities for
road pixels and one for non-road pixels, accumulated over the dataset.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

NUM_THRESHOLDS = 256


class RoadMaxF:
    """Accumulates per-threshold counts; ``compute()`` gives MaxF, AP and best threshold.

    ``update(prob, gt)``: ``prob`` is the road probability (any shape, in [0, 1]);
    ``gt`` is 1 for road, 0 for not road, anything else (e.g. 255) outside the
    evaluated area.
    """

    def __init__(self, *, device: torch.device | str = "cpu") -> None:
        self.thresholds = torch.arange(NUM_THRESHOLDS, dtype=torch.float64) / (NUM_THRESHOLDS - 1)
        # hist[k]: pixels with exactly k thresholds <= prob, i.e. prob >= t_i  <=>  k > i
        self.pos_hist = torch.zeros(NUM_THRESHOLDS + 1, dtype=torch.int64, device=device)
        self.neg_hist = torch.zeros(NUM_THRESHOLDS + 1, dtype=torch.int64, device=device)

    def update(self, prob: Tensor, gt: Tensor) -> None:
        if prob.shape != gt.shape:
            raise ValueError(f"probabilities {tuple(prob.shape)} and ground truth {tuple(gt.shape)} differ in shape")
        prob = prob.reshape(-1).to(self.pos_hist.device, torch.float64)  # (P,)
        gt = gt.reshape(-1).to(self.pos_hist.device)
        k = torch.bucketize(prob, self.thresholds.to(prob.device), right=True)  # (P,) in 0..256
        self.pos_hist += torch.bincount(k[gt == 1], minlength=NUM_THRESHOLDS + 1)
        self.neg_hist += torch.bincount(k[gt == 0], minlength=NUM_THRESHOLDS + 1)

    def all_reduce(self) -> None:

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(self.pos_hist)
            dist.all_reduce(self.neg_hist)

    def counts(self) -> tuple[Tensor, Tensor, Tensor]:
        """(TP, FP, FN) per threshold, each float64 (256,)."""
        above_pos = self.pos_hist.flip(0).cumsum(0).flip(0)[1:].double().cpu()  # road pixels with prob >= t_i
        above_neg = self.neg_hist.flip(0).cumsum(0).flip(0)[1:].double().cpu()
        total_pos = float(self.pos_hist.sum())
        return above_pos, above_neg, total_pos - above_pos

    def compute(self) -> dict:
        tp, fp, fn = self.counts()
        if float(tp[0] + fn[0]) == 0:
            raise ValueError("no road pixels in the ground truth: MaxF is undefined")
        recall = tp / (tp + fn)
        precision = torch.where(tp + fp > 0, tp / (tp + fp).clamp_min(1), torch.zeros_like(tp))
        f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp_min(1e-300),
                         torch.zeros_like(tp))
        best = int(f1.argmax())
        keep = ~((recall == 0) & (precision == 0))
        r, p = recall[keep], precision[keep]
        ap_levels = []
        for level in (i / 10 for i in range(11)):  # PASCAL 11-point interpolated AP
            sel = r >= level - 1e-12
            ap_levels.append(float(p[sel].max()) if sel.any() else 0.0)
        return {
            "max_f": float(f1[best]),
            "ap": sum(ap_levels) / len(ap_levels),
            "best_threshold": float(self.thresholds[best]),
            "precision": float(precision[best]),
            "recall": float(recall[best]),
            "pixels": int(self.pos_hist.sum() + self.neg_hist.sum()),
        }


__all__ = ["RoadMaxF", "NUM_THRESHOLDS"]
