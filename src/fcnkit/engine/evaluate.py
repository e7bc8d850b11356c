"""Run a segmentation model over a loader and score it from one confusion matrix.

Used by train-time validation and by ``fcnkit eval``, so both report the same
numbers. Under DDP each rank scores its shard and the matrices are summed.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from ..metrics import ConfusionMatrix, RoadMaxF
from ..models.zoo import report_dir
from . import distributed as D
from .plots import plot_class_iou, plot_confusion
from .runtime import autocast, cpu_bf16_pays, memory_format, resolve_amp, resolve_device
from .sampling import ShardSampler


@dataclass
class Evaluation:
    confusion: ConfusionMatrix
    road: RoadMaxF | None = None

    @property
    def metrics(self) -> dict:
        out = self.confusion.compute()
        if self.road is not None:
            out["kitti"] = self.road.compute()
        return out


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, *, num_classes: int, device: torch.device | str = "cpu",
             amp_dtype: torch.dtype | None = None, channels_last: bool = False, road_class: int | None = None,
             progress: bool = False, desc: str = "eval") -> Evaluation:
    """Accumulate ``hist[gt, pred]`` (and, with ``road_class``, KITTI road-probability
    counts) over ``loader``'s ``(images, {"mask": ...})`` batches; reduced over ranks."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(num_classes, device=device)
    road = RoadMaxF(device=device) if road_class is not None else None
    try:
        for images, targets in tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
            images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format(channels_last))
            mask = targets["mask"].to(device, non_blocking=True)  # (N, H, W), 255 = ignore/padding
            with autocast(device, amp_dtype):
                logits = model(images)  # (N, C, H, W)
            logits = logits.float()
            cm.update(mask, logits.argmax(1))
            if road is not None:
                valid = (mask >= 0) & (mask < num_classes)
                road_gt = torch.where(valid, (mask == road_class).long(), torch.full_like(mask, -1))  # 1/0/outside
                road.update(logits.softmax(1)[:, road_class], road_gt)
    finally:
        model.train(was_training)
    cm.all_reduce()
    if road is not None:
        road.all_reduce()
    return Evaluation(cm, road)




def write_report(ev: Evaluation, classes: list[str], out_dir: str | Path, **info) -> dict:
    """``metrics.json`` (atomic), ``confusion.png`` and ``class_iou.png`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = ev.metrics
    report = {**info, "classes": classes, **metrics,
              "class_iu_by_name": dict(zip(classes, metrics["class_iu"])),
              "confusion_matrix": ev.confusion.hist.cpu().tolist()}
    tmp = out / ".metrics.json.tmp"
    tmp.write_text(json.dumps(_nan_to_none(report), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, out / "metrics.json")
    plot_confusion(ev.confusion.hist, classes, out / "confusion.png")
    plot_class_iou(metrics["class_iu"], classes, out / "class_iou.png")
    return report


def _nan_to_none(x):
    """Undefined per-class values (NaN) become JSON null, so any JSON reader accepts the file."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return x


def evaluate_checkpoint(checkpoint: str | Path, data: str, *, split: str = "val", out_dir: str | Path | None = None,
                        batch_size: int = 1, workers: int = 2, device: str = "auto", amp: str = "auto",
                        channels_last: bool = True, road_class: int | None = None, max_samples: int | None = None,
                        progress: bool = True) -> dict:
    """``fcnkit eval`` as a function: load a saved model / checkpoint, score it on
    ``data``'s ``split``, write the report; returns the metrics dict.

    ``road_class`` enables KITTI MaxF/AP on that class's probability; by default it is
    the "road" class of two-class datasets.
    """
    from ..data import build_dataset, eval_transforms, pad_collate
    from ..models.saved import load_model

    owns_group = not D.active()
    dist = D.init_distributed(resolve_device(device).type)
    try:
        dev = resolve_device(device, local_rank=dist.local_rank)
        model = load_model(checkpoint).to(dev, memory_format=memory_format(channels_last))
        dataset = build_dataset(data, split, eval_transforms(model.preprocessing))
        classes = list(getattr(dataset, "classes", []))
        meta_classes = model.meta.get("classes")
        if len(classes) != model.num_classes:
            raise ValueError(f"{checkpoint}: the model predicts {model.num_classes} classes but {data} ({split}) "
                             f"has {len(classes)}")
        if meta_classes and list(meta_classes) != classes:
            warnings.warn(f"{checkpoint}: class names differ from the dataset's ({meta_classes} vs {classes}); "
                          f"scoring by index", stacklevel=2)
        if road_class is None and len(classes) == 2 and "road" in [c.lower() for c in classes]:
            road_class = [c.lower() for c in classes].index("road")
        ignore_index = int(getattr(dataset, "ignore_index", 255))
        if max_samples is not None and max_samples < len(dataset):
            dataset = Subset(dataset, range(max_samples))
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                            sampler=ShardSampler(len(dataset), num_replicas=dist.world_size, rank=dist.rank),
                            collate_fn=partial(pad_collate, ignore_index=ignore_index))
        amp_dtype = resolve_amp(amp, dev, cpu_bf16_pays=cpu_bf16_pays(model))
        ev = evaluate(model, loader, num_classes=model.num_classes, device=dev, amp_dtype=amp_dtype,
                      channels_last=channels_last, road_class=road_class, progress=progress and dist.is_main)
        out = Path(out_dir) if out_dir is not None else report_dir(checkpoint, f"eval-{split}")
        info = {"checkpoint": str(checkpoint), "data": str(data), "split": split, "images": len(dataset),
                "amp": str(amp_dtype), "report_dir": str(out)}
        return write_report(ev, classes, out, **info) if dist.is_main else ev.metrics
    finally:
        if owns_group:
            D.cleanup()


__all__ = ["Evaluation", "evaluate", "evaluate_checkpoint", "write_report"]
