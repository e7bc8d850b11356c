"""Mosaic augmentation (YOLOv4): four training images tiled around a random centre.

A small detection set (the raccoon set has 128 training photos, nearly all of one large
animal in the middle) shows the detector the same few layouts every epoch. A mosaic puts
four photos on one canvas, cut where they meet, so each step sees objects at the
canvas's edges, partly hidden, smaller and in new company. The canvas is twice the crop
size and is shrunk by half, so the usual random scale and crop follow unchanged.
Masks are tiled too (uncovered canvas is ``ignore_index``), so it works for every task;
in a mixture of datasets labelled differently (joint training) only samples drawn with
three of their own kind are tiled.
"""

from __future__ import annotations

import random
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.ops import box_area
from torchvision.transforms import v2

from .base import IGNORE_INDEX

MIN_KEPT_AREA = 0.25  # a box cut by its tile's edge is kept if at least this share of it is left


class Mosaic(Dataset):
    """``dataset`` (samples ``(image uint8 (3, H, W), target)`` as stored or resized) where
    each sample is, with probability ``p``, a mosaic of it and three random others on a
    canvas of ``2 * size`` shrunk to ``size`` (H, W). Boxes are shifted with their image,
    cut at its tile's edges and dropped if less than ``MIN_KEPT_AREA`` of them is left.
    Draws from python's ``random``, which the trainer seeds per sample and epoch
    (``fcnkit.engine.sampling.SeededSamples``), so a resumed run tiles the same."""

    def __init__(self, dataset: Dataset, size: tuple[int, int], p: float = 0.5, *,
                 ignore_index: int = IGNORE_INDEX) -> None:
        if not 0 <= p <= 1:
            raise ValueError(f"mosaic probability must be in [0, 1], not {p}")
        self.dataset, self.size, self.p, self.ignore_index = dataset, (int(size[0]), int(size[1])), p, ignore_index

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        if self.p == 0 or len(self.dataset) < 4 or random.random() >= self.p:
            return self.dataset[index]
        chosen = {index}
        while len(chosen) < 4:
            chosen.add(random.randrange(len(self.dataset)))
        samples = [self.dataset[index]] + [self.dataset[i] for i in sorted(chosen - {index})]
        if len({frozenset(k for k in ("mask", "boxes") if k in t) for _, t in samples}) > 1:
            return samples[0]  # masks from one dataset and boxes from another (joint data): no common labels
        h, w = self.size
        centre = (int(random.uniform(0.5, 1.5) * h), int(random.uniform(0.5, 1.5) * w))
        return self.tile(samples, centre)

    def tile(self, samples: list[tuple[torch.Tensor, dict[str, Any]]], centre: tuple[int, int]
             ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Four samples meeting at ``centre`` (y, x) of the ``2 * size`` canvas: the first to
        its top left, then top right, bottom left, bottom right, each touching the centre
        with its inner corner; then the canvas at half size."""
        H, W = 2 * self.size[0], 2 * self.size[1]
        yc, xc = centre
        canvas = torch.zeros(3, H, W, dtype=samples[0][0].dtype)
        has_mask = all("mask" in t for _, t in samples)
        has_boxes = all("boxes" in t for _, t in samples)
        mask = torch.full((H, W), self.ignore_index, dtype=samples[0][1]["mask"].dtype) if has_mask else None
        boxes, labels = [], []
        for k, (image, target) in enumerate(samples):
            ih, iw = image.shape[-2:]
            y0, x0 = yc - ih if k < 2 else yc, xc - iw if k % 2 == 0 else xc  # the image's corner on the canvas
            cy0, cx0, cy1, cx1 = max(y0, 0), max(x0, 0), min(y0 + ih, H), min(x0 + iw, W)  # the part that shows
            if cy1 <= cy0 or cx1 <= cx0:
                continue
            canvas[:, cy0:cy1, cx0:cx1] = image[:, cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
            if mask is not None:
                mask[cy0:cy1, cx0:cx1] = target["mask"][..., cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
            if has_boxes and len(target["boxes"]):
                b = target["boxes"].as_subclass(torch.Tensor).float() + torch.tensor([x0, y0, x0, y0])
                cut = b.clamp(min=torch.tensor([cx0, cy0, cx0, cy0]), max=torch.tensor([cx1, cy1, cx1, cy1]))
                keep = box_area(cut) >= MIN_KEPT_AREA * box_area(b).clamp(min=1e-6)
                boxes.append(cut[keep])
                labels.append(torch.as_tensor(target["labels"])[keep])
        target: dict[str, Any] = {}
        if mask is not None:
            target["mask"] = tv_tensors.Mask(mask)
        if has_boxes:
            target["boxes"] = tv_tensors.BoundingBoxes(torch.cat(boxes) if boxes else torch.zeros(0, 4),
                                                       format="XYXY", canvas_size=(H, W))
            target["labels"] = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.int64)
        return v2.Resize(self.size, antialias=True)(tv_tensors.Image(canvas), target)  # masks nearest, boxes scaled


__all__ = ["MIN_KEPT_AREA", "Mosaic"]
