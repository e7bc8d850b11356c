"""Detection datasets: image + boxes (XYXY, image pixels) + labels (0-based class index).

Same contract as segmentation (``fcnkit.data.base``), with a target of
``{"boxes": tv_tensors.BoundingBoxes, "labels": int64 (K,)}``. Label k is
``classes[k]``; there is no background entry (a detector adds its own).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torchvision import tv_tensors

from ..heads import BOXES
from .base import ImageDataset, Sample, default_palette
from .image_io import DataError, read_image_tensor


class DetectionDataset(ImageDataset):
    """Subclasses fill ``files`` / ``classes`` and implement ``load_target(index)`` ->
    ``(boxes float (K, 4) XYXY, labels int64 (K,), declared (H, W) or None)``."""

    heads = frozenset({BOXES})  # what its samples are labelled with (fcnkit.heads)
    unit = "images"

    def __init__(self, files: list[tuple[Path, Path]], classes: list[str], transforms: Callable | None = None,
                 problems: list[str] | None = None) -> None:
        self.classes = list(classes)
        self.palette = default_palette(len(self.classes) + 1)[1:]  # VOC colours without black
        super().__init__(files, transforms, problems)

    def load_target(self, index: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int] | None]:
        raise NotImplementedError  # pragma: no cover - abstract

    def load_raw(self, index: int) -> Sample:
        image_path, annot_path = self.files[index]
        image = read_image_tensor(image_path)
        boxes, labels, declared = self.load_target(index)
        h, w = image.shape[-2:]
        if declared is not None and tuple(declared) != (h, w):
            raise DataError(f"{annot_path}: declares image size {declared[1]}x{declared[0]} (WxH) but "
                            f"{image_path.name} is {w}x{h}")
        outside = ((boxes[:, :2] < -1).any(1) | (boxes[:, 2] > w + 1) | (boxes[:, 3] > h + 1)
                   if len(boxes) else torch.zeros(0, dtype=torch.bool))  # 1 px slack for rounding
        if outside.any():
            raise DataError(f"{annot_path}: {int(outside.sum())} box(es) outside the {w}x{h} image, e.g. "
                            f"{boxes[outside][0].tolist()}")
        target: dict[str, Any] = {
            "boxes": tv_tensors.BoundingBoxes(boxes.clamp(min=0).clamp(max=torch.tensor([w, h, w, h])),
                                              format="XYXY", canvas_size=(h, w)),
            "labels": labels,
        }
        return image, target


def check_boxes(boxes: torch.Tensor, path: Path) -> torch.Tensor:
    """Raise DataError naming ``path`` for boxes with x2 <= x1 or y2 <= y1."""
    bad = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1]) if len(boxes) else torch.zeros(0, dtype=torch.bool)
    if bad.any():
        raise DataError(f"{path}: {int(bad.sum())} degenerate box(es) (x2 <= x1 or y2 <= y1), e.g. "
                        f"{boxes[bad][0].tolist()}")
    return boxes
