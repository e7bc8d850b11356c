"""Score any model over a loader: one confusion matrix for masks, COCO mAP for boxes.

Used by train-time validation and by ``fcnkit eval``, so both report the same
numbers, for every task. Under DDP each rank scores its shard: confusion matrices
are summed and detections gathered, so the metrics equal a one-process run. What is
scored follows the model's spec: masks for a ``SEG`` head, boxes for a ``BOXES`` head.
(The in-memory toolkit of optimize and the demo is ``fcnkit.engine.samples``; the
report files of ``fcnkit eval`` are ``fcnkit.engine.report``.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..detection.decode import DEFAULT_NMS_IOU, decode
from ..heads import BOXES, SEG, SEG_OUTPUT
from ..metrics import ConfusionMatrix, RoadMaxF
from ..metrics.detection import DetectionMAP, confidence_report
from ..metrics.temporal import FlickerMeter
from ..models.spec import spec_of
from ..nn import pixel_classes
from ..progress import progress_bar
from . import distributed as D
from .runtime import autocast, memory_format
from .tasks import to_device


@dataclass
class Evaluation:
    """What a pass over the data accumulated: ``confusion`` (when masks were scored),
    ``road`` (KITTI counts), ``detection`` (COCO statistics, when boxes were scored)."""

    confusion: ConfusionMatrix | None = None
    road: RoadMaxF | None = None
    detection: dict[str, float] | None = None
    flicker: tuple[FlickerMeter, FlickerMeter] | None = None  # (predictions, ground truth), frames in order

    @property
    def metrics(self) -> dict:
        out: dict[str, Any] = {}
        if self.confusion is not None:
            out.update(self.confusion.compute())
            if self.road is not None:
                out["kitti"] = self.road.compute()
        if self.detection is not None:
            out.update(self.detection)
        if self.confusion is not None and self.detection is not None:
            out["score"] = joint_score(out)
        if self.flicker is not None:
            pred, truth = (m.scores() for m in self.flicker)
            out.update(flicker=pred["flicker"], class_flicker=pred["class_flicker"],
                       gt_flicker=truth["flicker"], gt_class_flicker=truth["class_flicker"])
        return out


def joint_score(metrics: dict) -> float:
    """The joint model's model-selection number: the mean of mean IU and mAP@[.5:.95]
    (both in [0, 1]) over those that were measured."""
    parts = [float(metrics[k]) for k in ("mean_iu", "map") if k in metrics and not math.isnan(float(metrics[k]))]
    return sum(parts) / len(parts) if parts else math.nan


class _MaskScores:
    """``hist[gt, pred]`` over labelled pixels of the samples that have a mask (``has_mask``);
    with ``road_class`` also KITTI road probability counts, with ``flicker`` the frame-to-frame
    meters of predictions and ground truth."""

    def __init__(self, num_classes: int, device: torch.device, road_class: int | None, flicker: bool) -> None:
        self.num_classes, self.road_class = num_classes, road_class
        self.confusion = ConfusionMatrix(num_classes, device=device)
        self.road = RoadMaxF(device=device) if road_class is not None else None
        self.meters = tuple(FlickerMeter(num_classes, resize_starts_clip=True) for _ in range(2)) if flicker else None
        self.images = torch.zeros(1, device=device)

    def update(self, outputs: dict[str, Tensor], targets: dict[str, Any]) -> None:
        """``outputs``: the model's; its classes are ``pixel_classes`` (an export's argmax or ours)."""
        if "mask" not in targets:
            return
        masks = targets["mask"]  # (N, H, W)
        sel = targets.get("has_mask", torch.ones(len(masks), dtype=torch.bool, device=masks.device))
        if not sel.any():
            return
        if self.road is not None and SEG_OUTPUT not in outputs:
            raise ValueError("KITTI road scores need class scores; this model gives class labels (exported with "
                             "--output labels)")
        mask, pred = masks[sel], pixel_classes(outputs)[sel]  # (n, H, W) each
        self.images += len(mask)
        self.confusion.update(mask, pred)
        if self.meters is not None:  # frame by frame, in order
            for t, p in zip(mask.cpu(), pred.cpu()):
                self.meters[0].update(p)
                self.meters[1].update(t)
        if self.road is not None:
            valid = (mask >= 0) & (mask < self.num_classes)
            road_gt = torch.where(valid, (mask == self.road_class).long(), torch.full_like(mask, -1))
            scores = outputs[SEG_OUTPUT][sel].float()  # (n, K, H, W)
            self.road.update(scores.softmax(1)[:, self.road_class], road_gt)

    def fill(self, ev: Evaluation) -> None:
        """Sum over ranks into ``ev``, unless no rank saw a mask (then nothing was scored)."""
        D.all_reduce_sum(self.images)
        if self.images.item() == 0:
            return
        self.confusion.all_reduce()
        ev.confusion, ev.flicker = self.confusion, self.meters
        if self.road is not None:
            self.road.all_reduce()
            ev.road = self.road


class _BoxScores:
    """The top-100 decoded peaks per image of the samples that have boxes (``has_boxes``)
    against their ground truth, kept with each image's dataset index: gathered detections
    are put back in dataset order, since COCOeval breaks score ties by image order (else 2
    ranks would score unlike 1 process)."""

    def __init__(self, stride: int, nms_iou: float | None, order: list[int]) -> None:
        self.stride, self.nms_iou, self.order = stride, nms_iou, order
        self.scored: list[tuple[int, dict[str, Tensor], dict[str, Tensor]]] = []

    def update(self, outputs: dict[str, Tensor], targets: dict[str, Any], first: int) -> None:
        """``first``: the position in this rank's ``order`` of the batch's first image."""
        found = decode(outputs, stride=self.stride, k=100, threshold=0.0, nms_iou=self.nms_iou,
                       image_sizes=targets["image_size"])
        for i, keep in enumerate(targets["has_boxes"].tolist()):
            if keep:
                truth = {"boxes": targets["boxes"][i].cpu(), "labels": targets["labels"][i].cpu()}
                self.scored.append((self.order[first + i], {k: v.cpu() for k, v in found[i].items()}, truth))

    def compute(self) -> dict[str, float]:
        scored = sorted((item for part in D.gather_objects(self.scored) for item in part), key=lambda item: item[0])
        preds, truths = [p for _, p, _ in scored], [t for _, _, t in scored]
        metric = DetectionMAP()
        metric.update(preds, truths)
        return {**metric.compute(), **confidence_report(preds, truths)}


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, *, device: torch.device | str = "cpu",
             amp_dtype: torch.dtype | None = None, channels_last: bool = False, road_class: int | None = None,
             nms_iou: float | None = DEFAULT_NMS_IOU, progress: bool = False, desc: str = "eval",
             flicker: bool = False) -> Evaluation:
    """Run ``model`` over ``loader`` (batches from its task's collate) and score what its
    spec's heads predict.

    Masks (the spec's classes): ``hist[gt, pred]`` over labelled pixels
    (and, with ``road_class``, KITTI road probability counts). Boxes: the top-100 decoded
    peaks per image (no score cut-off, as COCO's top-100; class-wise NMS at ``nms_iou``)
    against the ground truth. Each only on the samples labelled for it (``has_mask`` /
    ``has_boxes``). Detecting models run in fp32: box sizes regressed in map cells lose
    about a pixel in bf16. ``flicker``: the images are frames of a clip in loader order
    (one process): also the share of pixels changing class between consecutive frames, of
    predictions and of ground truth (``fcnkit.metrics.temporal``); a change of frame size
    starts a new clip.
    """
    if flicker and D.current().enabled:
        raise ValueError("flicker needs the frames in order: run it in one process (not under torchrun)")
    spec = spec_of(model)
    device = torch.device(device)
    masks = _MaskScores(spec.num_classes, device, road_class, flicker) if SEG in spec.heads else None
    boxes = None
    if BOXES in spec.heads:
        amp_dtype = None
        order = list(getattr(loader.sampler, "indices", None) or range(len(loader.dataset)))
        boxes = _BoxScores(spec.output_stride, nms_iou, order)
    seen = 0
    was_training = model.training
    model.eval()
    try:
        for images, targets in progress_bar(loader, desc=desc, unit="batch", enabled=progress, leave=False):
            images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format(channels_last))
            targets = to_device(targets, device)
            with autocast(device, amp_dtype):
                outputs = model(images)
            if masks is not None:
                masks.update(outputs, targets)
            if boxes is not None:
                boxes.update(outputs, targets, seen)
            seen += len(images)
    finally:
        model.train(was_training)
    ev = Evaluation()
    if masks is not None:
        masks.fill(ev)
    if boxes is not None:
        ev.detection = boxes.compute()
    return ev


__all__ = ["Evaluation", "evaluate", "joint_score"]
