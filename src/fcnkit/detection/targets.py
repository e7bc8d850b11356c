"""Boxes -> dense training targets for the "objects as points" head.

Each box becomes a peak of exactly 1 at its centre cell on its class's heatmap, with
an elliptical Gaussian around it (sigma proportional to the box's width and height,
as in TTFNet, Liu et al. 2020, so long thin boxes get long thin splats); overlapping
splats take the maximum. The centre cell also stores the box size and the sub-cell
offset that the integer cell loses, and is marked in ``reg_mask`` so the L1 losses only
look there. Offsets are in output-map cells (input pixels / stride); sizes are the
natural log of the width and height in cells, so the L1 loss weighs a 10% error the
same for a 4-cell and a 40-cell box, and a freshly initialised head (output 0 = 1
cell) reaches typical sizes in a few dozen steps instead of hundreds.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SIGMA_SCALE = 0.54 / 6  # TTFNet's alpha / 6: the splat's sigma as a fraction of the box side
MIN_SIGMA = 0.5  # cells; a tiny box still gets a splat wider than one cell


def render_targets(boxes: Tensor, labels: Tensor, *, num_classes: int, map_size: tuple[int, int],
                   stride: int) -> dict[str, Tensor]:
    """Dense targets for one image.

    Args:
        boxes: (K, 4) XYXY in input pixels. Boxes with no area or whose centre lies
            outside the map are skipped (they cannot be predicted).
        labels: (K,) class indices in [0, num_classes).
        map_size: (h, w) of the output maps, ``ceil(H / stride)``.

    Returns ``heatmap`` (C, h, w) in [0, 1], ``size`` (2, h, w) = (log w, log h) and
    ``offset`` (2, h, w) = (dx, dy) filled at centre cells, ``reg_mask`` (h, w) bool.
    """
    h, w = map_size
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    labels = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
    if len(boxes) != len(labels):
        raise ValueError(f"render_targets: {len(boxes)} boxes but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"render_targets: labels {labels.tolist()} outside 0..{num_classes - 1}")
    heatmap = torch.zeros(num_classes, h, w)
    size = torch.zeros(2, h, w)
    offset = torch.zeros(2, h, w)
    mask = torch.zeros(h, w, dtype=torch.bool)
    ys = torch.arange(h, dtype=torch.float32).view(h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, w)
    for (x1, y1, x2, y2), c in zip((boxes / stride).tolist(), labels.tolist()):
        bw, bh = x2 - x1, y2 - y1
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        ix, iy = math.floor(cx), math.floor(cy)
        if bw <= 0 or bh <= 0 or not (0 <= ix < w and 0 <= iy < h):
            continue
        sx, sy = max(SIGMA_SCALE * bw, MIN_SIGMA), max(SIGMA_SCALE * bh, MIN_SIGMA)
        splat = torch.exp(-((xs - ix) ** 2 / (2 * sx * sx) + (ys - iy) ** 2 / (2 * sy * sy)))  # (h, w)
        torch.maximum(heatmap[c], splat, out=heatmap[c])
        size[:, iy, ix] = torch.tensor([math.log(bw), math.log(bh)])
        offset[:, iy, ix] = torch.tensor([cx - ix, cy - iy])
        mask[iy, ix] = True
    return {"heatmap": heatmap, "size": size, "offset": offset, "reg_mask": mask}


def render_batch(boxes: list[Tensor], labels: list[Tensor], *, num_classes: int, map_size: tuple[int, int],
                 stride: int) -> dict[str, Tensor]:
    """``render_targets`` for each image, stacked: heatmap (N, C, h, w), size/offset
    (N, 2, h, w), reg_mask (N, h, w)."""
    per_image = [render_targets(b, l, num_classes=num_classes, map_size=map_size, stride=stride)
                 for b, l in zip(boxes, labels)]
    return {k: torch.stack([t[k] for t in per_image]) for k in ("heatmap", "size", "offset", "reg_mask")}
