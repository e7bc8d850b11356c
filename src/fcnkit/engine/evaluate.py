"""Score any model over a loader: one confusion matrix for masks, COCO mAP for boxes.

Used by train-time validation and by ``fcnkit eval``, so both report the same
numbers, for every task. Under DDP each rank scores its shard: confusion matrices
are summed and detections gathered, so the metrics equal a one-process run.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..data import build_dataset, eval_transforms
from ..detection.decode import DEFAULT_NMS_IOU, decode
from ..io import atomic_write_text
from ..metrics import ConfusionMatrix, RoadMaxF
from ..metrics.detection import DetectionMAP, confidence_report
from ..metrics.temporal import FlickerMeter
from ..progress import progress_bar
from . import distributed as D
from .plots import plot_class_iou, plot_confusion
from .runtime import autocast, memory_format
from .tasks import task_of, to_device

DET_KEYS = ("heatmap", "size", "offset")
METRIC_UNITS = "fractions in [0, 1]; fcnkit eval prints them as percent"  # metrics.json's "units"


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


def _seg_logits(outputs: Tensor | dict[str, Tensor]) -> Tensor | None:
    return outputs if isinstance(outputs, Tensor) else outputs.get("seg")


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, *, num_classes: int | None = None,
             device: torch.device | str = "cpu", amp_dtype: torch.dtype | None = None, channels_last: bool = False,
             road_class: int | None = None, nms_iou: float | None = DEFAULT_NMS_IOU, progress: bool = False,
             desc: str = "eval", flicker: bool = False) -> Evaluation:
    """Run ``model`` over ``loader`` (batches from its task's collate) and score it.

    Masks: ``hist[gt, pred]`` over labelled pixels (and, with ``road_class``, KITTI road
    probability counts). Boxes: the top-100 decoded peaks per image (no score cut-off,
    as COCO's top-100; class-wise NMS at ``nms_iou``) against the ground truth. Each
    only on the samples labelled for it (``has_mask`` / ``has_boxes``). Detecting
    models run in fp32: box sizes regressed in map cells lose about a pixel in bf16.
    ``flicker``: the images are frames of a clip in loader order (one process): also the
    share of pixels changing class between consecutive frames, of predictions and of
    ground truth (``fcnkit.metrics.temporal``); a change of frame size starts a new clip.
    """
    if flicker and D.current().enabled:
        raise ValueError("flicker needs the frames in order: run it in one process (not under torchrun)")
    task = task_of(model)
    device = torch.device(device)
    if task.detects:
        amp_dtype = None
    num_classes = num_classes or getattr(model, "num_classes", None)
    cm = ConfusionMatrix(num_classes, device=device) if task.segments else None
    road = RoadMaxF(device=device) if road_class is not None and task.segments else None
    stride = getattr(model, "output_stride", 1)
    preds: list[dict[str, Tensor]] = []
    truths: list[dict[str, Tensor]] = []
    # dataset index of each scored image: gathered detections are put back in dataset order,
    # since COCOeval breaks score ties by image order (else 2 ranks score unlike 1 process)
    order = list(getattr(loader.sampler, "indices", None) or range(len(loader.dataset)))
    seen, where = 0, []
    seg_images = torch.zeros(1, device=device)
    meters = None  # (predictions, ground truth)
    if flicker and task.segments:
        meters = (FlickerMeter(num_classes, resize_starts_clip=True), FlickerMeter(num_classes, resize_starts_clip=True))
    was_training = model.training
    model.eval()
    try:
        for images, targets in progress_bar(loader, desc=desc, unit="batch", enabled=progress, leave=False):
            images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format(channels_last))
            targets = to_device(targets, device)
            with autocast(device, amp_dtype):
                outputs = model(images)
            logits = _seg_logits(outputs)
            if cm is not None and logits is not None and "mask" in targets:
                sel = targets.get("has_mask", torch.ones(len(images), dtype=torch.bool, device=device))
                if sel.any():
                    mask, logits = targets["mask"][sel], logits[sel].float()  # (n, H, W), (n, K, H, W)
                    seg_images += len(mask)
                    cm.update(mask, logits.argmax(1))
                    if meters is not None:  # frame by frame, in order
                        for t, p in zip(mask.cpu(), logits.argmax(1).cpu()):
                            meters[0].update(p)
                            meters[1].update(t)
                    if road is not None:
                        valid = (mask >= 0) & (mask < num_classes)
                        road_gt = torch.where(valid, (mask == road_class).long(), torch.full_like(mask, -1))
                        road.update(logits.softmax(1)[:, road_class], road_gt)
            if task.detects:
                found = decode({k: outputs[k] for k in DET_KEYS}, stride=stride, k=100, threshold=0.0,
                               nms_iou=nms_iou, image_sizes=targets["image_size"])
                for i, keep in enumerate(targets["has_boxes"].tolist()):
                    if keep:
                        preds.append({k: v.cpu() for k, v in found[i].items()})
                        truths.append({"boxes": targets["boxes"][i].cpu(), "labels": targets["labels"][i].cpu()})
                        where.append(order[seen + i])
            seen += len(images)
    finally:
        model.train(was_training)
    ev = Evaluation()
    if cm is not None:
        D.all_reduce_sum(seg_images)
        if seg_images.item() > 0:
            cm.all_reduce()
            ev.confusion = cm
            ev.flicker = meters
            if road is not None:
                road.all_reduce()
                ev.road = road
    if task.detects:
        metric = DetectionMAP()
        scored = sorted((item for part in D.gather_objects(list(zip(where, preds, truths))) for item in part),
                        key=lambda item: item[0])
        metric.update([p for _, p, _ in scored], [t for _, _, t in scored])
        ev.detection = {**metric.compute(), **confidence_report([p for _, p, _ in scored], [t for _, _, t in scored])}
    return ev


# --- the same scores on a list of in-memory samples (optimisation budgets, the demo) ---------

@dataclass
class Sample:
    image: Tensor  # (1, 3, H, W) normalised
    mask: Tensor  # (1, H, W) int64, ignore index where unlabelled


def load_samples(spec: str, split: str, preprocessing, *, limit: int | None = None) -> list[Sample]:
    """The first ``limit`` images of a dataset spec (``camvid:/path``), preprocessed for the model."""
    ds = build_dataset(spec, split, eval_transforms(preprocessing))
    n = len(ds) if limit is None else min(limit, len(ds))
    if n == 0:
        raise ValueError(f"{spec}: the {split} split has no images")
    out = []
    for i in range(n):
        image, target = ds[i]
        out.append(Sample(image.as_subclass(Tensor).unsqueeze(0), target["mask"].as_subclass(Tensor).unsqueeze(0)))
    return out


def predict_all(run: Callable[[Tensor], Tensor], samples: list[Sample]) -> list[Tensor]:
    """Each sample's (1, H, W) argmax classes under ``run`` (a model or any runner)."""
    with torch.inference_mode():
        return [run(s.image).argmax(1).cpu() for s in samples]  # each (1, H, W)


def mean_iu(preds: list[Tensor], samples: list[Sample], num_classes: int) -> float:
    """Mean IU in percent, from one confusion matrix over all images."""
    cm = ConfusionMatrix(num_classes)
    for p, s in zip(preds, samples):
        cm.update(s.mask, p)
    return 100.0 * cm.compute()["mean_iu"]


def agreement(preds: list[Tensor], reference: list[Tensor]) -> float:
    """The fraction of pixels whose class equals the reference's (e.g. int8 vs fp32)."""
    same = sum(int((p == r).sum()) for p, r in zip(preds, reference))
    return same / sum(r.numel() for r in reference)


def write_report(ev: Evaluation, classes: list[str], out_dir: str | Path, **info) -> dict:
    """``metrics.json`` (atomic) and, for masks, ``confusion.png`` and ``class_iou.png``.
    Scores are fractions in [0, 1] (``fcnkit eval`` prints them as percent)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = ev.metrics
    report = {**info, "units": METRIC_UNITS, "classes": classes, **metrics}
    if ev.confusion is not None:
        report["class_iu_by_name"] = dict(zip(classes, metrics["class_iu"]))
        report["confusion_matrix"] = ev.confusion.hist.cpu().tolist()
    atomic_write_text(out / "metrics.json", json.dumps(_nan_to_none(report), indent=2, allow_nan=False) + "\n")
    if ev.confusion is not None:
        plot_confusion(ev.confusion.hist, classes, out / "confusion.png")
        plot_class_iou(metrics["class_iu"], classes, out / "class_iou.png")
    return report


def _nan_to_none(x):
    """Undefined values (NaN) become JSON null, so any JSON reader accepts the file."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return x


__all__ = ["Evaluation", "Sample", "agreement", "evaluate", "joint_score", "load_samples", "mean_iu", "predict_all",
           "write_report"]
