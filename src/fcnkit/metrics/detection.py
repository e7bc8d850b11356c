"""COCO-style box mAP through pycocotools (the reference implementation, not a re-write).

``DetectionMAP`` collects predictions and ground truth image by image in the
``torchvision``/``torchmetrics`` dict format, then builds in-memory COCO objects
and runs ``COCOeval``: AP averaged over IoU 0.50:0.05:0.95 (``map``), at 0.50
(``map_50``) and 0.75 (``map_75``), by object size, and recall at 100 detections.
"""

from __future__ import annotations

import contextlib
import io
import math

import torch
from torch import Tensor

from ..extras import require

# COCOeval.stats order for iouType="bbox"
STAT_NAMES = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large",
              "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large")


def _xywh(boxes: Tensor) -> list[list[float]]:
    b = boxes.detach().to("cpu", torch.float64).reshape(-1, 4)
    return torch.cat([b[:, :2], b[:, 2:] - b[:, :2]], dim=1).tolist()  # XYXY -> XYWH


class DetectionMAP:
    """Accumulate ``update(preds, targets)``; ``compute()`` returns the COCO statistics.

    ``preds``: list (one per image) of ``{"boxes": (M, 4) XYXY, "scores": (M,), "labels": (M,)}``;
    ``targets``: list of ``{"boxes": (K, 4) XYXY, "labels": (K,)}``. Classes are the
    label values seen in ground truth and predictions. A statistic with no ground
    truth to score against is NaN (COCOeval's -1).
    """

    def __init__(self) -> None:
        require("detection", "pycocotools")  # now, not after an evaluation's worth of images
        self.reset()

    def reset(self) -> None:
        self._images: list[dict] = []
        self._gt: list[dict] = []
        self._dets: list[dict] = []
        self._classes: set[int] = set()

    def update(self, preds: list[dict[str, Tensor]], targets: list[dict[str, Tensor]]) -> None:
        if len(preds) != len(targets):
            raise ValueError(f"DetectionMAP.update: {len(preds)} predictions for {len(targets)} images")
        for pred, target in zip(preds, targets):
            image_id = len(self._images) + 1
            self._images.append({"id": image_id})
            for box, label in zip(_xywh(target["boxes"]), target["labels"].tolist()):
                self._gt.append({"id": len(self._gt) + 1, "image_id": image_id, "category_id": int(label),
                                 "bbox": box, "area": box[2] * box[3], "iscrowd": 0})
                self._classes.add(int(label))
            for box, score, label in zip(_xywh(pred["boxes"]), pred["scores"].tolist(), pred["labels"].tolist()):
                self._dets.append({"image_id": image_id, "category_id": int(label), "bbox": box,
                                   "score": float(score)})
                self._classes.add(int(label))

    def compute(self) -> dict[str, float]:
        require("detection", "pycocotools")
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        if not self._gt:
            return {name: math.nan for name in STAT_NAMES}
        if not self._dets:  # COCO.loadRes cannot take an empty list; nothing found scores 0
            return {name: 0.0 for name in STAT_NAMES}
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            gt = COCO()
            # copies: COCO.loadRes and COCOeval annotate the dicts they are given
            gt.dataset = {"images": [dict(i) for i in self._images], "annotations": [dict(a) for a in self._gt],
                          "categories": [{"id": c} for c in sorted(self._classes)]}
            gt.createIndex()
            evaluator = COCOeval(gt, gt.loadRes([dict(d) for d in self._dets]), iouType="bbox")
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        return {name: (math.nan if v < 0 else float(v)) for name, v in zip(STAT_NAMES, evaluator.stats)}


def match_scores(preds: list[dict[str, Tensor]], targets: list[dict[str, Tensor]], *, iou: float = 0.5
                 ) -> tuple[Tensor, Tensor, int]:
    """(scores, is_true, number of ground-truth boxes): every detection's score and whether it
    matched a ground-truth box of its class at IoU >= ``iou`` (greedily by descending score,
    each box matched once, as COCO's matching does): the separation of true and false peaks."""
    from torchvision.ops import box_iou

    scores, hits, n_truth = [], [], 0
    for pred, target in zip(preds, targets):
        n_truth += len(target["labels"])
        order = pred["scores"].argsort(descending=True)
        used = torch.zeros(len(target["labels"]), dtype=torch.bool)
        overlaps = box_iou(pred["boxes"].float().reshape(-1, 4), target["boxes"].float().reshape(-1, 4))  # (M, K)
        for i in order.tolist():
            ok = (target["labels"] == pred["labels"][i]) & ~used & (overlaps[i] >= iou)
            j = int(torch.where(ok, overlaps[i], torch.full_like(overlaps[i], -1)).argmax()) if ok.any() else -1
            if j >= 0:
                used[j] = True
            scores.append(float(pred["scores"][i]))
            hits.append(j >= 0)
    return torch.tensor(scores, dtype=torch.float64), torch.tensor(hits, dtype=torch.bool), n_truth


def confidence_report(preds: list[dict[str, Tensor]], targets: list[dict[str, Tensor]], *, iou: float = 0.5
                      ) -> dict[str, float]:
    """The score threshold with the best F1 at IoU ``iou`` (what to show people), its
    precision and recall, and where true and false peaks score (median true score, the
    95th percentile and maximum of false scores)."""
    scores, hits, n_truth = match_scores(preds, targets, iou=iou)
    out = {"conf_best_f1": math.nan, "f1_best": math.nan, "precision_at_conf": math.nan,
           "recall_at_conf": math.nan, "true_score_median": math.nan, "false_score_p95": math.nan,
           "false_score_max": math.nan}
    if len(scores) == 0 or n_truth == 0:
        return out
    order = scores.argsort(descending=True)
    s, h = scores[order], hits[order].double()
    tp, fp = h.cumsum(0), (1 - h).cumsum(0)
    precision, recall = tp / (tp + fp), tp / n_truth
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
    last = torch.ones(len(s), dtype=torch.bool)  # a threshold keeps every tie: score at the end of its run
    last[:-1] = s[:-1] != s[1:]
    best = int(torch.where(last, f1, torch.full_like(f1, -1)).argmax())
    out.update(conf_best_f1=float(s[best]), f1_best=float(f1[best]), precision_at_conf=float(precision[best]),
               recall_at_conf=float(recall[best]))
    if hits.any():
        out["true_score_median"] = float(scores[hits].median())
    if (~hits).any():
        false = scores[~hits]
        out.update(false_score_p95=float(false.quantile(0.95)), false_score_max=float(false.max()))
    return out


__all__ = ["DetectionMAP", "STAT_NAMES", "confidence_report", "match_scores"]
