"""Score any model over a loader: one confusion matrix for masks, COCO mAP for boxes.

Used by train-time validation and by ``fcnkit eval``, so both report the same
numbers, for every task. Under DDP each rank scores its shard: confusion matrices
are summed and detections gathered, so the metrics equal a one-process run.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from ..data import build_dataset, eval_transforms
from ..detection.decode import DEFAULT_NMS_IOU, decode
from ..draw import draw_boxes
from ..io import atomic_write, atomic_write_text
from ..metrics import ConfusionMatrix, RoadMaxF
from ..metrics.detection import DetectionMAP
from ..models.saved import load_model
from ..models.zoo import report_dir
from . import distributed as D
from .plots import plot_class_iou, plot_confusion
from .runtime import autocast, cpu_bf16_pays, memory_format, resolve_amp, resolve_device
from .sampling import ShardSampler
from .tasks import Task, task_of, to_device

DET_KEYS = ("heatmap", "size", "offset")


@dataclass
class Evaluation:
    """What a pass over the data accumulated: ``confusion`` (when masks were scored),
    ``road`` (KITTI counts), ``detection`` (COCO statistics, when boxes were scored)."""

    confusion: ConfusionMatrix | None = None
    road: RoadMaxF | None = None
    detection: dict[str, float] | None = None

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
             desc: str = "eval") -> Evaluation:
    """Run ``model`` over ``loader`` (batches from its task's collate) and score it.

    Masks: ``hist[gt, pred]`` over labelled pixels (and, with ``road_class``, KITTI road
    probability counts). Boxes: the top-100 decoded peaks per image (no score cut-off,
    as COCO's top-100; class-wise NMS at ``nms_iou``) against the ground truth. Each
    only on the samples labelled for it (``has_mask`` / ``has_boxes``). Detecting
    models run in fp32: box sizes regressed in map cells lose about a pixel in bf16.
    """
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
    seg_images = torch.zeros(1, device=device)
    was_training = model.training
    model.eval()
    try:
        for images, targets in tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
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
    finally:
        model.train(was_training)
    ev = Evaluation()
    if cm is not None:
        D.all_reduce_sum(seg_images)
        if seg_images.item() > 0:
            cm.all_reduce()
            ev.confusion = cm
            if road is not None:
                road.all_reduce()
                ev.road = road
    if task.detects:
        metric = DetectionMAP()
        for rank_preds, rank_truths in D.gather_objects((preds, truths)):
            metric.update(rank_preds, rank_truths)
        ev.detection = metric.compute()
    return ev


def write_report(ev: Evaluation, classes: list[str], out_dir: str | Path, **info) -> dict:
    """``metrics.json`` (atomic) and, for masks, ``confusion.png`` and ``class_iou.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = ev.metrics
    report = {**info, "classes": classes, **metrics}
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


GT_COLOUR, PRED_COLOUR = (0, 255, 0), (255, 0, 0)


@torch.no_grad()
def draw_detection_examples(model: nn.Module, dataset: Dataset, path: str | Path, *, n: int = 8,
                            threshold: float = 0.3, nms_iou: float | None = DEFAULT_NMS_IOU,
                            transform=None) -> None:
    """A grid PNG of the first ``n`` images with boxes: ground truth green, detections (score
    >= ``threshold``, or else the single best) red with their scores. ``dataset`` yields
    uint8 images; ``transform`` (e.g. a resize) is applied before the model sees them."""
    model.eval()
    side, tiles = 256, []
    for i in range(min(len(dataset), n * 4)):  # some samples may have no boxes
        image, target = dataset[i]
        if "boxes" not in target:
            continue
        image = image.as_subclass(Tensor)  # (3, H, W) uint8
        x = model.preprocessing(image.float().div(255)).unsqueeze(0)
        (pred,) = decode({k: v for k, v in model(x).items() if k in DET_KEYS}, stride=model.output_stride,
                         threshold=0.0, nms_iou=nms_iou, image_sizes=[tuple(image.shape[-2:])])
        keep = max(1, int((pred["scores"] >= threshold).sum()))  # at least the best guess, score shown
        tile = Image.fromarray(image.permute(1, 2, 0).numpy())
        draw_boxes(tile, target["boxes"].as_subclass(Tensor).tolist(), colors=GT_COLOUR)
        draw_boxes(tile, pred["boxes"][:keep].tolist(), colors=PRED_COLOUR,
                   captions=[f"{s:.2f}" for s in pred["scores"][:keep].tolist()])
        tile.thumbnail((side, side))  # letterboxed into side x side below
        canvas = Image.new("RGB", (side, side))
        canvas.paste(tile, (0, 0))
        tiles.append(np.asarray(canvas))
        if len(tiles) == n:
            break
    if not tiles:
        return
    cols = min(4, len(tiles))
    rows = [np.concatenate(tiles[r:r + cols] + [np.zeros_like(tiles[0])] * (cols - len(tiles[r:r + cols])), 1)
            for r in range(0, len(tiles), cols)]
    grid = Image.fromarray(np.concatenate(rows, 0))
    atomic_write(path, lambda f: grid.save(f, format="PNG"))


def _resize(max_size: int | None):
    from torchvision.transforms import v2

    return [v2.Resize(size=None, max_size=int(max_size))] if max_size else []


def _check_classes(checkpoint, data, split, model: nn.Module, task: Task, dataset: Dataset) -> None:
    kind = getattr(dataset, "task", "segmentation")
    if task.segments and kind in ("segmentation", "joint"):
        classes = list(getattr(dataset, "classes", []))
        if len(classes) != model.num_classes:
            raise ValueError(f"{checkpoint}: the model predicts {model.num_classes} classes but {data} ({split}) "
                             f"has {len(classes)}")
        meta_classes = model.meta.get("classes")
        if meta_classes and list(meta_classes) != classes:
            warnings.warn(f"{checkpoint}: class names differ from the dataset's ({meta_classes} vs {classes}); "
                          f"scoring by index", stacklevel=3)
    if task.detects and kind in ("detection", "joint"):
        from ..data.mixed import box_classes_of

        boxes = box_classes_of(dataset) if kind == "detection" else list(dataset.box_classes)
        if len(boxes) != model.det_classes:
            raise ValueError(f"{checkpoint}: the model detects {model.det_classes} classes but {data} ({split}) "
                             f"has {len(boxes)} box classes")
    if not (task.segments and kind in ("segmentation", "joint")) and not (task.detects and kind in ("detection",
                                                                                                  "joint")):
        raise ValueError(f"{checkpoint}: a {task.name} model cannot be scored on {data}, which has "
                         f"{'masks' if kind == 'segmentation' else 'boxes'} only")


def evaluate_checkpoint(checkpoint: str | Path, data: str | list[str], *, split: str = "val",
                        out_dir: str | Path | None = None, batch_size: int = 1, workers: int = 2,
                        device: str = "auto", amp: str = "auto", channels_last: bool = True,
                        road_class: int | None = None, max_samples: int | None = None, max_size: int | None = None,
                        nms_iou: float | None = DEFAULT_NMS_IOU, progress: bool = True) -> dict:
    """``fcnkit eval`` as a function, for every task: load a saved model / checkpoint (or a
    weights name), score it on ``data``'s ``split``, write the report; returns the metrics.

    Masks give the paper's four metrics and per-class IoU (``confusion.png``,
    ``class_iou.png``); ``road_class`` adds KITTI MaxF/AP (default: the "road" class of
    two-class datasets). Boxes give COCO mAP and ``detections.png``. A joint model
    reports both, each on the data that has its labels. Images are resized so the longer
    side is ``max_size`` (default: the size a detector was trained at, from its metadata).
    """
    owns_group = not D.active()
    dist = D.init_distributed(resolve_device(device).type)
    try:
        dev = resolve_device(device, local_rank=dist.local_rank)
        model = load_model(checkpoint).to(dev, memory_format=memory_format(channels_last))
        task = task_of(model)
        max_size = max_size or model.meta.get("max_size")
        from torchvision.transforms import v2

        dataset = build_dataset(data, split, v2.Compose([*_resize(max_size), eval_transforms(model.preprocessing)]))
        if len(dataset) == 0:
            raise ValueError(f"{data}: split {split!r} has no images")
        _check_classes(checkpoint, data, split, model, task, dataset)
        classes = list(getattr(dataset, "classes", []))
        if task.segments and road_class is None and len(classes) == 2 and "road" in [c.lower() for c in classes]:
            road_class = [c.lower() for c in classes].index("road")
        ignore_index = int(getattr(dataset, "ignore_index", 255))
        if max_samples is not None and max_samples < len(dataset):
            dataset = Subset(dataset, range(max_samples))
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                            sampler=ShardSampler(len(dataset), num_replicas=dist.world_size, rank=dist.rank),
                            collate_fn=task.collate(model, ignore_index))
        amp_dtype = resolve_amp(amp, dev, cpu_bf16_pays=cpu_bf16_pays(model))
        ev = evaluate(model, loader, num_classes=getattr(model, "num_classes", None), device=dev,
                      amp_dtype=amp_dtype, channels_last=channels_last, road_class=road_class, nms_iou=nms_iou,
                      progress=progress and dist.is_main)
        if not dist.is_main:
            return ev.metrics
        out = Path(out_dir) if out_dir is not None else report_dir(checkpoint, f"eval-{split}")
        info = {"checkpoint": str(checkpoint), "data": data if isinstance(data, str) else list(data),
                "split": split, "task": task.name, "images": len(dataset),
                "amp": str(None if task.detects else amp_dtype), "report_dir": str(out)}
        if task.detects:
            info.update(box_classes=model.meta.get("box_classes") or model.meta.get("classes"), nms_iou=nms_iou,
                        max_size=max_size)
        report = write_report(ev, classes if ev.confusion is not None else [], out, **info)
        if ev.detection is not None:
            images_only = build_dataset(data, split, v2.Compose(_resize(max_size)) if max_size else None)
            draw_detection_examples(model.float(), images_only, out / "detections.png", nms_iou=nms_iou)
        return report
    finally:
        if owns_group:
            D.cleanup()


__all__ = ["Evaluation", "draw_detection_examples", "evaluate", "evaluate_checkpoint", "joint_score",
           "write_report"]
