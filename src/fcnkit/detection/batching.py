"""Collate detection (and mixed seg + det) samples into a batch with rendered targets.

Builds on ``fcnkit.data.collate.pad_collate`` (pad to the batch maximum, bottom/right,
so boxes keep their coordinates), then renders the heatmap/size/offset targets at
the model's output stride. Rendering happens here, in the DataLoader workers, so
the training process only runs the network.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..data.base import IGNORE_INDEX
from ..data.collate import pad_collate
from .targets import render_batch


class DetectionCollate:
    """``[(image, target), ...]`` -> ``(images (N, 3, H, W), targets)``.

    ``targets`` holds pad_collate's entries (``boxes``/``labels`` lists, ``mask`` when
    any sample has one; its per-image ``size`` renamed ``image_size``), the
    ``render_batch`` maps (``heatmap``, ``size``, ``offset``, ``reg_mask``, named like
    the model's outputs), and ``has_boxes`` / ``has_mask`` (N,) bool. A sample with only
    a mask gets an all-ignore mask slot filled for it, a sample with only boxes an
    empty box list, and the flags tell the loss which is real, so one batch may mix
    both kinds (the joint model's training data).
    """

    def __init__(self, *, num_classes: int, stride: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.stride = stride
        self.ignore_index = ignore_index

    def __call__(self, batch: list[tuple[Tensor, dict[str, Any]]]) -> tuple[Tensor, dict[str, Any]]:
        has_boxes = torch.tensor(["boxes" in t for _, t in batch])
        has_mask = torch.tensor(["mask" in t for _, t in batch])
        if has_mask.any() and not has_mask.all():
            batch = [(im, t if "mask" in t else {**t, "mask": torch.full(im.shape[-2:], self.ignore_index)})
                     for im, t in batch]
        images, targets = pad_collate(batch, ignore_index=self.ignore_index)
        n, _, h, w = images.shape
        boxes = targets.get("boxes", [torch.zeros(0, 4)] * n)
        labels = targets.get("labels", [torch.zeros(0, dtype=torch.int64)] * n)
        maps = render_batch(boxes, labels, num_classes=self.num_classes,
                            map_size=(math.ceil(h / self.stride), math.ceil(w / self.stride)), stride=self.stride)
        targets["image_size"] = targets.pop("size")  # (N, 2) unpadded (h, w); "size" is the box-size map
        targets.update(maps, has_boxes=has_boxes, has_mask=has_mask)
        targets.setdefault("boxes", boxes)
        targets.setdefault("labels", labels)
        return images, targets
