"""Score a detector: COCO mAP over a dataset split, a JSON report and a PNG of boxes.

``evaluate_detection`` is the loop (shared by training-time validation);
``evaluate_detection_checkpoint`` is what ``fcnkit eval`` runs for detection models.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..io import atomic_write, atomic_write_text
from ..metrics.detection import DetectionMAP
from ..models.zoo import report_dir
from .batching import DetectionCollate
from .decode import DEFAULT_NMS_IOU, decode

DET_KEYS = ("heatmap", "size", "offset")
GT_COLOUR, PRED_COLOUR = "lime", "red"


def detection_classes(model: nn.Module) -> int:
    """Heatmap channels: ``det_classes`` for the joint model, ``num_classes`` for a detector."""
    return int(getattr(model, "det_classes", model.num_classes))


def make_loader(dataset, model: nn.Module, *, batch_size: int, shuffle: bool, workers: int = 0,
                seed: int = 0) -> DataLoader:
    """A DataLoader whose batches carry rendered targets at the model's output stride."""
    collate = DetectionCollate(num_classes=detection_classes(model), stride=model.output_stride)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers, collate_fn=collate,
                      generator=torch.Generator().manual_seed(seed) if shuffle else None,
                      persistent_workers=workers > 0)


@torch.no_grad()
def evaluate_detection(model: nn.Module, loader: DataLoader, *, device: torch.device | str | None = None,
                       threshold: float = 0.0, k: int = 100, nms_iou: float | None = DEFAULT_NMS_IOU,
                       progress: bool = True) -> dict[str, float]:
    """COCO box statistics (``map``, ``map_50``, ``map_75``, ...) over the samples with boxes.

    Runs in fp32: sizes regressed in map cells lose about a pixel in bf16. Every one of
    the top ``k`` peaks counts by default (``threshold=0``), as in COCO's top-100: AP
    integrates over all score levels, and a young model whose centres all score below
    a cut-off would otherwise score exactly 0.
    """
    device = torch.device(device or next(model.parameters()).device)
    model.eval()
    metric = DetectionMAP()
    for images, targets in tqdm(loader, desc="val", leave=False, disable=not progress):
        out = model(images.to(device))
        preds = decode({key: out[key] for key in DET_KEYS}, stride=model.output_stride, k=k, threshold=threshold,
                       nms_iou=nms_iou, image_sizes=targets["image_size"])
        keep = targets["has_boxes"].tolist()
        metric.update([{key: v.cpu() for key, v in p.items()} for p, kp in zip(preds, keep) if kp],
                      [{"boxes": b, "labels": lab} for b, lab, kp in zip(targets["boxes"], targets["labels"], keep)
                       if kp])
    return metric.compute()


def _fit(max_size: int | None):
    from torchvision.transforms import v2

    return [v2.Resize(size=None, max_size=int(max_size))] if max_size else []


@torch.no_grad()
def draw_examples(model: nn.Module, dataset, path: str | Path, *, n: int = 8, threshold: float = 0.3,
                  nms_iou: float | None = DEFAULT_NMS_IOU) -> None:
    """A grid PNG of the first ``n`` images: ground truth in green, detections (score >=
    ``threshold``, or else the single best) in red with their scores. ``dataset`` yields
    uint8 images."""
    from torchvision.utils import draw_bounding_boxes, make_grid, save_image

    model.eval()
    tiles = []
    for i in range(min(n, len(dataset))):
        image, target = dataset[i]
        image = image.as_subclass(torch.Tensor)  # (3, H, W) uint8
        x = model.preprocessing(image.float().div(255)).unsqueeze(0)
        (pred,) = decode({k: v for k, v in model(x).items() if k in DET_KEYS}, stride=model.output_stride,
                         threshold=0.0, nms_iou=nms_iou, image_sizes=[tuple(image.shape[-2:])])
        keep = max(1, int((pred["scores"] >= threshold).sum()))  # at least the best guess, score shown
        pred = {k: v[:keep] for k, v in pred.items()}
        tile = draw_bounding_boxes(image, target["boxes"].as_subclass(torch.Tensor), colors=GT_COLOUR, width=2)
        if len(pred["boxes"]):
            tile = draw_bounding_boxes(tile, pred["boxes"], labels=[f"{s:.2f}" for s in pred["scores"].tolist()],
                                       colors=PRED_COLOUR, width=2)
        side = 256  # tiles of one size for the grid: letterbox each image into side x side
        scale = side / max(tile.shape[-2:])
        tile = torch.nn.functional.interpolate(tile[None].float(), scale_factor=scale, mode="bilinear",
                                               antialias=True)[0]
        canvas = torch.zeros(3, side, side)
        canvas[:, :tile.shape[1], :tile.shape[2]] = tile[:, :side, :side]
        tiles.append(canvas / 255)
    grid = make_grid(tiles, nrow=4, padding=4)
    atomic_write(path, lambda f: save_image(grid, f, format="png"))


def evaluate_detection_checkpoint(checkpoint: str | Path, data: str, *, split: str = "val",
                                  out_dir: str | Path | None = None, batch_size: int = 4, workers: int = 0,
                                  max_size: int | None = None, nms_iou: float | None = DEFAULT_NMS_IOU,
                                  progress: bool = True) -> dict:
    """Load a detection checkpoint, score it on ``data``'s ``split`` and write
    ``metrics.json`` and ``detections.png`` to ``out_dir`` (default next to the
    checkpoint). Images are resized so the longer side is ``max_size`` (default: the
    size the model was trained at, from its metadata)."""
    from torchvision.transforms import v2

    from ..data import build_dataset, eval_transforms
    from ..models.saved import load_model

    model = load_model(checkpoint)
    if not hasattr(model, "output_stride") or not isinstance(getattr(model, "head", None), nn.Module):
        raise ValueError(f"{checkpoint}: {model.config.get('name')} is not a detection model")
    max_size = max_size or model.meta.get("max_size")
    dataset = build_dataset(data, split, v2.Compose([*_fit(max_size), eval_transforms(model.preprocessing)]))
    if len(dataset) == 0:
        raise ValueError(f"{data}: split {split!r} has no images")
    loader = make_loader(dataset, model, batch_size=batch_size, shuffle=False, workers=workers)
    stats = evaluate_detection(model, loader, nms_iou=nms_iou, progress=progress)
    out = Path(out_dir) if out_dir else report_dir(checkpoint, f"eval-{split}")
    out.mkdir(parents=True, exist_ok=True)
    report = {"checkpoint": str(checkpoint), "data": str(data), "split": split, "images": len(dataset),
              "max_size": max_size, "classes": model.meta.get("classes"), "nms_iou": nms_iou,
              **{k: (None if math.isnan(v) else v) for k, v in stats.items()}}
    atomic_write_text(out / "metrics.json", json.dumps(report, indent=1))
    raw = build_dataset(data, split, v2.Compose(_fit(max_size)) if max_size else None)
    draw_examples(model, raw, out / "detections.png", nms_iou=nms_iou)
    report["report_dir"] = str(out)
    return report




def is_detection_checkpoint(path: str | Path) -> bool:
    """Whether a saved model / checkpoint (``.pt`` or ``.safetensors``) holds a registered
    detection or joint model. Reads only the config, so asking costs little even for a
    500 MB VGG checkpoint; anything unreadable is "no" and left to the caller's loader.
    """
    from ..models.detection import DETECTION_MODELS
    from ..models.saved import read_config

    name = (read_config(path) or {}).get("name", "")
    return str(name).replace("-", "_") in DETECTION_MODELS


def eval_command(args) -> int:
    """``fcnkit eval`` for detection checkpoints: print the COCO numbers, write the report."""
    report = evaluate_detection_checkpoint(args.checkpoint, args.data, split=args.split, out_dir=args.out,
                                           batch_size=args.batch_size, workers=args.workers,
                                           nms_iou=args.nms_iou or None)
    fmt = lambda v: "   n/a" if v is None else f"{v:6.4f}"  # noqa: E731
    print(f"{args.checkpoint} on {args.data} ({args.split}, {report['images']} images"
          f"{', longer side ' + str(report['max_size']) + ' px' if report['max_size'] else ''})")
    print(f"  mAP@[.5:.95] {fmt(report['map'])}   AP50 {fmt(report['map_50'])}   AP75 {fmt(report['map_75'])}   "
          f"AR@100 {fmt(report['mar_100'])}")
    print(f"wrote {report['report_dir']}/metrics.json, detections.png")
    return 0


__all__ = ["detection_classes", "draw_examples", "eval_command", "evaluate_detection",
           "evaluate_detection_checkpoint", "is_detection_checkpoint", "make_loader"]
