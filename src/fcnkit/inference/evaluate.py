"""``fcnkit eval`` as a function: open any model (name, file, export), score it on a dataset.

The scoring loop is ``fcnkit.engine.evaluate`` (the trainer validates with it too);
this module opens the model through ``open_model`` (so ``.onnx`` and OpenVINO files
are scored exactly like checkpoints), builds the data and writes the report.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from collections.abc import Sequence
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.transforms import v2

from ..data import build_dataset, eval_transforms
from ..data.mixed import MixedDataset, box_classes_of, dataset_heads, has_boxes, has_masks
from ..detection.decode import DEFAULT_NMS_IOU, decode
from ..draw import draw_boxes
from ..engine import distributed as D
from ..engine.evaluate import evaluate
from ..engine.report import write_report
from ..engine.sampling import ShardSampler
from ..engine.tasks import task_for
from ..heads import BOXES, SEG
from ..io import atomic_write, check_output_dir, next_run_dir
from ..models.spec import ModelSpec, spec_of
from .runtime import open_model
from .tta import Augmented, tta_views

GT_COLOUR, PRED_COLOUR = (0, 255, 0), (255, 0, 0)


@torch.no_grad()
def draw_detection_examples(model: nn.Module | Callable, dataset: Dataset, path: str | Path, *, n: int = 8,
                            threshold: float = 0.3, nms_iou: float | None = DEFAULT_NMS_IOU,
                            transform=None) -> None:
    """A grid PNG of the first ``n`` images with boxes: ground truth green, detections (score
    >= ``threshold``, or else the single best) red with their scores. ``dataset`` yields
    uint8 images; ``transform`` (e.g. a resize) is applied before the model sees them."""
    model.eval()
    spec = spec_of(model)
    side, tiles = 256, []
    for i in _boxed_indices(dataset)[: n * 4]:  # some samples may still have no boxes
        image, target = dataset[i]
        if "boxes" not in target:
            continue
        image = image.as_subclass(Tensor)  # (3, H, W) uint8
        maps = model(spec.preprocessing(image.float().div(255)).unsqueeze(0))
        (pred,) = decode(maps, stride=spec.output_stride,
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
    grid = _with_key(Image.fromarray(np.concatenate(rows, 0)))
    atomic_write(path, lambda f: grid.save(f, format="PNG"))


KEY_HEIGHT = 22


def _with_key(grid: Image.Image) -> Image.Image:
    """The grid under a one-line key saying which colour is which."""
    from PIL import ImageDraw

    out = Image.new("RGB", (grid.width, grid.height + KEY_HEIGHT), (255, 255, 255))
    out.paste(grid, (0, KEY_HEIGHT))
    draw = ImageDraw.Draw(out)
    x = 6
    for colour, text in ((GT_COLOUR, "ground truth"), (PRED_COLOUR, "detections (score)")):
        draw.rectangle((x, 6, x + 10, 16), outline=colour, width=3)
        draw.text((x + 16, 5), text, fill=(0, 0, 0))
        x += 16 + int(draw.textlength(text)) + 18
    return out


def _boxed_indices(dataset: Dataset) -> list[int]:
    """Indices worth drawing: in a mixture, only those of the datasets that have boxes."""
    if isinstance(dataset, MixedDataset):
        starts = [0, *dataset.cumulative_sizes[:-1]]
        return [start + i for start, d in zip(starts, dataset.datasets) if has_boxes(d) for i in range(len(d))]
    return list(range(len(dataset)))


def _resize(max_size: int | None):
    return [v2.Resize(size=None, max_size=int(max_size))] if max_size else []


def _check_classes(checkpoint, data, split, spec: ModelSpec, dataset: Dataset) -> None:
    """The heads the model and the data share, with the same class counts (names may differ:
    a warning, then scored by index); a ValueError when they share none."""
    shared = spec.heads & dataset_heads(dataset)
    if not shared:
        raise ValueError(f"{checkpoint}: a {spec.task} model cannot be scored on {data}, which has "
                         f"{'masks' if has_masks(dataset) else 'boxes'} only")
    if SEG in shared:
        classes = list(getattr(dataset, "classes", []))
        if len(classes) != spec.num_classes:
            raise ValueError(f"{checkpoint}: the model predicts {spec.num_classes} classes but {data} ({split}) "
                             f"has {len(classes)}")
        if spec.classes and list(spec.classes) != classes:
            warnings.warn(f"{checkpoint}: class names differ from the dataset's ({list(spec.classes)} vs "
                          f"{classes}); scoring by index", stacklevel=3)
    if BOXES in shared:
        boxes = box_classes_of(dataset)
        if len(boxes) != spec.det_classes:
            raise ValueError(f"{checkpoint}: the model detects {spec.det_classes} classes but {data} ({split}) "
                             f"has {len(boxes)} box classes")


def evaluate_checkpoint(checkpoint: str | Path, data: str | list[str], *, split: str = "val",
                        out_dir: str | Path | None = None, batch_size: int = 1, workers: int = 2,
                        device: str = "auto", amp: str = "auto", channels_last: bool | None = None,
                        road_class: int | None = None, max_samples: int | None = None, max_size: int | None = None,
                        nms_iou: float | None = DEFAULT_NMS_IOU, tta: bool = False,
                        scales: Sequence[float] | None = None, flip: bool = False, flicker: bool = False,
                        progress: bool = True) -> dict:
    """``fcnkit eval`` as a function, for every task: load a saved model / checkpoint (or a
    weights name), score it on ``data``'s ``split``, write the report; returns the metrics.

    Masks give the paper's four metrics and per-class IoU (``confusion.png``,
    ``class_iou.png``); ``road_class`` adds KITTI MaxF/AP (default: the "road" class of
    two-class datasets). Boxes give COCO mAP and ``detections.png``. A joint model
    reports both, each on the data that has its labels. Images are resized so the longer
    side is ``max_size`` (default: the size a detector was trained at, from its metadata).
    ``tta`` / ``scales`` / ``flip`` score a segmentation model's averaged test-time
    augmentation views (``fcnkit.inference.tta``) instead of its plain output.
    ``flicker``: the split's images are a clip's frames in file order (CamVid's val is):
    also measure how many pixels change class from frame to frame, predicted and true.
    The report goes to ``out_dir`` (default ``runs/eval/N`` under the working directory,
    the first free N; never the model's folder); its scores are fractions in [0, 1].
    """
    out = check_output_dir(Path(out_dir) if out_dir is not None else next_run_dir("eval"),
                           what="report folder")  # before the evaluation, not after it
    with D.joined(device) as (dist, dev):
        model = open_model(checkpoint, device=dev, channels_last=channels_last)
        spec = model.spec
        task = task_for(spec.heads)
        max_size = max_size or model.meta.get("max_size")
        dataset = build_dataset(data, split, v2.Compose([*_resize(max_size), eval_transforms(spec.preprocessing)]))
        if len(dataset) == 0:
            raise ValueError(f"{data}: split {split!r} has no images")
        if model.module is not None:  # torch models: precision and layout measured here (exports run as stored)
            # detecting models run in fp32: box sizes regressed in map cells lose about a pixel in bf16
            model.choose_run((batch_size, 3, *dataset[0][0].shape[-2:]), amp="off" if task.detects else amp,
                             channels_last=channels_last, say=print if progress and dist.is_main else None)
        views = tta_views(tta, scales, flip)
        if views != ((1.0,), False):
            model.require_scores("TTA needs")
            model = Augmented(model, scales=views[0], flip=views[1])
        _check_classes(checkpoint, data, split, spec, dataset)
        classes = list(getattr(dataset, "classes", []))
        if task.segments and road_class is None and len(classes) == 2 and "road" in [c.lower() for c in classes]:
            road_class = [c.lower() for c in classes].index("road")
        if road_class is not None:  # before the data is read, not at the first batch
            model.require_scores("KITTI road MaxF/AP need")
        ignore_index = int(getattr(dataset, "ignore_index", 255))
        if max_samples is not None and max_samples < len(dataset):
            dataset = Subset(dataset, range(max_samples))
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                            sampler=ShardSampler(len(dataset), num_replicas=dist.world_size, rank=dist.rank),
                            collate_fn=task.collate(model, ignore_index))
        ev = evaluate(model, loader, device=dev, amp_dtype=None,
                      channels_last=bool(getattr(model, "channels_last", False)), road_class=road_class, nms_iou=nms_iou,
                      progress=progress and dist.is_main, flicker=flicker)
        if not dist.is_main:
            return ev.metrics
        info = {"checkpoint": str(checkpoint), "backend": model.backend, "data": data if isinstance(data, str) else list(data),
                "split": split, "task": task.name, "images": len(dataset),
                "precision": model.precision, "channels_last": bool(getattr(model, "channels_last", False)),
                "report_dir": str(out)}
        if views != ((1.0,), False):
            info["tta"] = {"scales": list(views[0]), "flip": views[1]}
        if task.detects:
            info.update(box_classes=list(spec.box_classes) or None, nms_iou=nms_iou, max_size=max_size)
        report = write_report(ev, classes if ev.confusion is not None else [], out, **info)
        if ev.detection is not None:
            images_only = build_dataset(data, split, v2.Compose(_resize(max_size)) if max_size else None)
            draw_detection_examples(model, images_only, out / "detections.png", nms_iou=nms_iou)
        return report


__all__ = ["draw_detection_examples", "evaluate_checkpoint"]
