"""Losses for the "objects as points" head, and the joint seg + det sum.

Heatmaps: the penalty-reduced pixel-wise focal loss of CornerNet / CenterNet
(alpha = 2, beta = 4): negatives near a centre are penalised less, by
``(1 - target) ** beta``. Sub-cell offset: L1 at centre cells. Log-size: L1 over each
box's regression region, weighted by ``reg_weight`` (``targets.py``). Boxes: the
generalized IoU loss (Rezatofighi et al. 2019) of the box decoded at each region cell
(cell + offset, exp(log-size)) against its ground truth, weighted the same way, which
rewards overlap itself: L1 on log-sizes treats a box 10% too wide and 10% too tall like
one 20% too wide, IoU does not (and AP75 is an IoU threshold). Everything is normalised
by the number of objects in the batch, as in the paper.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss

from ..heads import BOX_OUTPUTS, SEG_OUTPUT
from .targets import TARGET_KEYS

SIZE_WEIGHT = 1.0  # log-sizes are of the offsets' order (CenterNet's 0.1 was for sizes in cells)
OFFSET_WEIGHT = 1.0
GIOU_WEIGHT = 1.0  # GIoU loss is in [0, 2], the L1 terms of the same order once boxes are roughly right


def heatmap_focal_loss(logits: Tensor, target: Tensor, *, alpha: float = 2.0, beta: float = 4.0) -> Tensor:
    """Penalty-reduced focal loss, summed and divided by the number of centres (>= 1).

    ``logits`` and ``target`` are (N, C, h, w); centres are where ``target == 1``.
    Log-probabilities come from ``logsigmoid`` so saturated logits stay finite.
    """
    logits = logits.float()
    pos = target.eq(1).float()
    p = logits.sigmoid()
    pos_term = F.logsigmoid(logits) * (1 - p) ** alpha * pos
    neg_term = F.logsigmoid(-logits) * p ** alpha * (1 - target) ** beta * (1 - pos)
    return -(pos_term.sum() + neg_term.sum()) / pos.sum().clamp(min=1)


def masked_l1(pred: Tensor, target: Tensor, weight: Tensor, objects: int | Tensor | None = None) -> Tensor:
    """L1 between (N, 2, h, w) maps, weighted per cell by ``weight`` (N, h, w; a bool mask
    weighs its cells 1), summed and divided by ``objects`` (default: the weights' sum)."""
    m = weight.unsqueeze(1).float()  # (N, 1, h, w), broadcast over the two channels
    return _per_object((pred.float() * m - target * m).abs().sum(), m, objects)


def _per_object(total: Tensor, weight: Tensor, objects: int | Tensor | None) -> Tensor:
    """``total`` divided by ``objects``, or by the weights' sum when not given (0 when nothing is weighted)."""
    denom = weight.sum() if objects is None else torch.as_tensor(objects, dtype=torch.float32)
    return total / denom.clamp(min=1e-6)


def region_box_giou_loss(pred_size: Tensor, pred_offset: Tensor, target_size: Tensor, target_offset: Tensor,
                         weight: Tensor, objects: int | Tensor | None = None) -> Tensor:
    """GIoU loss of the boxes decoded at the cells where ``weight`` (N, h, w) > 0 (centre =
    cell + offset, width/height = exp(log-size), in map cells), weighted and divided by
    ``objects`` (default: the weights' sum; a bool mask of centre cells gives the mean)."""
    m = weight > 0
    if not m.any():
        return pred_size.sum() * 0.0

    def boxes(size: Tensor, offset: Tensor) -> Tensor:  # (N, 2, h, w) maps -> (K, 4) XYXY in cells
        s = size.float().permute(0, 2, 3, 1)[m].clamp(max=20).exp()  # (K, 2) w, h
        o = offset.float().permute(0, 2, 3, 1)[m]  # (K, 2) dx, dy (the cell itself cancels out)
        return torch.cat([o - s / 2, o + s / 2], dim=1)

    w = weight[m].float()
    losses = generalized_box_iou_loss(boxes(pred_size, pred_offset), boxes(target_size, target_offset),
                                      reduction="none")
    return _per_object((losses * w).sum(), w, objects)


def detection_loss(outputs: dict[str, Tensor], targets: dict[str, Tensor], *, size_weight: float = SIZE_WEIGHT,
                   offset_weight: float = OFFSET_WEIGHT, giou_weight: float = GIOU_WEIGHT) -> dict[str, Tensor]:
    """Heatmap focal + weighted size L1 over the regression regions, offset L1 at the
    centres, GIoU of the region boxes; ``"det"`` is their weighted sum."""
    objects = targets["reg_mask"].sum().clamp(min=1)
    heat = heatmap_focal_loss(outputs["heatmap"], targets["heatmap"])
    size = masked_l1(outputs["size"], targets["size"], targets["reg_weight"], objects)
    offset = masked_l1(outputs["offset"], targets["offset"], targets["reg_mask"], objects)
    giou = region_box_giou_loss(outputs["size"], outputs["offset"], targets["size"], targets["offset"],
                                targets["reg_weight"], objects)
    return {"heatmap": heat, "size": size, "offset": offset, "giou": giou,
            "det": heat + size_weight * size + offset_weight * offset + giou_weight * giou}


def joint_loss(outputs: dict[str, Tensor], targets: dict[str, Tensor], *, ignore_index: int = 255,
               seg_weight: float = 1.0, det_weight: float = 1.0, seg_loss: Callable[[Tensor, Tensor], Tensor] | None = None
               ) -> dict[str, Tensor]:
    """Sum of the losses each sample has labels for.

    ``targets["has_boxes"]`` / ``targets["has_mask"]`` (N,) bool say which samples carry
    box or mask annotations; the detection loss sees only the first, the segmentation
    cross-entropy (on ``targets["mask"]``, (N, H, W)) only the second, and ``"total"``
    adds whichever are present (a batch with neither gives a constant 0: skip its step).
    A sample annotated with boxes but containing none still teaches the heatmap what
    background looks like, so presence is a flag, not "has at least one box".
    ``seg_loss(logits, target)`` replaces the default cross-entropy (e.g. a
    ``fcnkit.losses.SegmentationLoss``). ``seg_weight`` / ``det_weight`` scale the two in
    ``"total"`` (the parts are reported unscaled).
    """
    device = next(iter(outputs.values())).device
    out: dict[str, Tensor] = {}
    total = torch.zeros((), device=device)
    has_boxes = targets.get("has_boxes")
    if has_boxes is not None and has_boxes.any():
        det = detection_loss({k: outputs[k][has_boxes] for k in BOX_OUTPUTS},
                             {k: targets[k][has_boxes] for k in TARGET_KEYS})
        out.update(det)
        total = total + det_weight * det["det"]
    has_mask = targets.get("has_mask")
    if has_mask is not None and has_mask.any() and SEG_OUTPUT in outputs:  # a detector has no seg head
        logits, labels = outputs[SEG_OUTPUT][has_mask].float(), targets["mask"][has_mask]  # (n, K, H, W), (n, H, W)
        if seg_loss is not None:
            seg = seg_loss(logits, labels)
        else:  # summed / labelled pixels, so an image whose mask is all ignore adds 0, not NaN
            seg = F.cross_entropy(logits, labels, ignore_index=ignore_index,
                                  reduction="sum") / labels.ne(ignore_index).sum().clamp(min=1)
        out["seg"] = seg
        total = total + seg_weight * seg
    out["total"] = total
    return out
