"""Batching samples of different sizes: pad to the batch maximum, bottom/right.

FCNs take any input size, so instead of resizing (which would blur labels) a batch
is padded: images with 0 and masks with the ignore index, at the bottom and right,
so pixel (y, x) and every box keep their coordinates and padding never counts in
the loss or the metrics.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from .base import IGNORE_INDEX


def pad_collate(batch: list[tuple[Tensor, dict[str, Any]]], *, ignore_index: int = IGNORE_INDEX
                ) -> tuple[Tensor, dict[str, Any]]:
    """``[(image (3,h,w), target), ...]`` -> ``(images (N,3,H,W), targets)``.

    ``targets`` is one dict for the whole batch:

    - ``"mask"``: int64 (N, H, W), padding = ``ignore_index`` (when samples have masks);
    - ``"boxes"`` / ``"labels"``: lists of N plain tensors (K_i, 4) XYXY / (K_i,)
      (when samples have boxes), in padded-image coordinates (= original ones);
    - ``"size"``: int64 (N, 2), each sample's (h, w) before padding.

    Images are returned as plain float tensors (uint8 inputs are kept uint8).
    """
    if not batch:
        raise ValueError("pad_collate: empty batch")
    images = [image.as_subclass(Tensor) for image, _ in batch]
    targets = [target for _, target in batch]
    H = max(im.shape[-2] for im in images)
    W = max(im.shape[-1] for im in images)
    # F.pad takes (left, right, top, bottom) for the last two dims
    out_images = torch.stack([F.pad(im, (0, W - im.shape[-1], 0, H - im.shape[-2]), value=0.0)
                              for im in images])  # (N, 3, H, W)
    out: dict[str, Any] = {"size": torch.tensor([list(im.shape[-2:]) for im in images], dtype=torch.int64)}
    has_mask = ["mask" in t for t in targets]
    if any(has_mask):
        if not all(has_mask):
            raise ValueError("pad_collate: some samples have a mask and some do not")
        masks = [t["mask"].as_subclass(Tensor).to(torch.int64) for t in targets]
        out["mask"] = torch.stack([F.pad(m, (0, W - m.shape[-1], 0, H - m.shape[-2]), value=ignore_index)
                                   for m in masks])  # (N, H, W)
    if any("boxes" in t for t in targets):
        out["boxes"] = [t["boxes"].as_subclass(Tensor) if "boxes" in t else torch.zeros(0, 4) for t in targets]
        out["labels"] = [t["labels"].as_subclass(Tensor) if "labels" in t else torch.zeros(0, dtype=torch.int64)
                         for t in targets]
    return out_images, out
