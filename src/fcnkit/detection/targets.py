"""Boxes -> dense training targets for the "objects as points" head.

Each box becomes a peak of exactly 1 at its centre cell on its class's heatmap, with
an elliptical Gaussian around it (sigma proportional to the box's width and height,
as in TTFNet, Liu et al. 2020, so long thin boxes get long thin splats); overlapping
splats take the maximum. The centre cell is marked in ``reg_mask`` and stores the
sub-cell offset that the integer cell loses.

Box regression is trained at more cells than the centre, as in TTFNet: every cell of
the box's central region (``REGRESSION_REGION`` of its width and height) stores the box
size and its displacement to the true centre, with a weight ``reg_weight`` equal to the
splat there, normalised to sum to 1 per object. CenterNet's one cell per object gives
the size head a single sample per box, which on a few hundred photos is too few to fit
tight boxes; the neighbours also teach it the sizes a peak one cell off will read.
Where regions overlap, the smaller box wins (it is drawn last); a centre cell only ever
regresses its own box.

Offsets are in output-map cells (input pixels / stride); sizes are the natural log of
the width and height in cells, so the L1 loss weighs a 10% error the same for a 4-cell
and a 40-cell box, and a freshly initialised head (output 0 = 1 cell) reaches typical
sizes in a few dozen steps instead of hundreds.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SIGMA_SCALE = 0.54 / 6  # TTFNet's alpha / 6: the splat's sigma as a fraction of the box side
MIN_SIGMA = 0.5  # cells; a tiny box still gets a splat wider than one cell
TARGET_KEYS = ("heatmap", "size", "offset", "reg_mask", "reg_weight")  # what render_batch gives, per image
REGRESSION_REGION = 0.54  # TTFNet's beta: box regression at cells within this central part of the box (0: centre only)


def render_targets(boxes: Tensor, labels: Tensor, *, num_classes: int, map_size: tuple[int, int],
                   stride: int, region: float = REGRESSION_REGION) -> dict[str, Tensor]:
    """Dense targets for one image.

    Args:
        boxes: (K, 4) XYXY in input pixels. Boxes with no area or whose centre lies
            outside the map are skipped (they cannot be predicted).
        labels: (K,) class indices in [0, num_classes).
        map_size: (h, w) of the output maps, ``ceil(H / stride)``.
        region: the central fraction of each box whose cells regress it (0: the centre cell only).

    Returns ``heatmap`` (C, h, w) in [0, 1]; ``size`` (2, h, w) = (log w, log h) and
    ``offset`` (2, h, w) = (dx, dy) from the cell to the box centre, filled in each box's
    region; ``reg_weight`` (h, w) the per-object normalised regression weights; and
    ``reg_mask`` (h, w) bool at centre cells (where the offset is the sub-cell one).
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
    weight = torch.zeros(h, w)
    ys = torch.arange(h, dtype=torch.float32).view(h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, w)
    cells = boxes / stride
    drawn = []  # (x1, y1, x2, y2, class, centre cell x, y) of the boxes that can be predicted, largest first
    for i in torch.argsort((cells[:, 2] - cells[:, 0]) * (cells[:, 3] - cells[:, 1]), descending=True).tolist():
        x1, y1, x2, y2 = cells[i].tolist()
        ix, iy = math.floor((x1 + x2) / 2), math.floor((y1 + y2) / 2)
        if x2 > x1 and y2 > y1 and 0 <= ix < w and 0 <= iy < h:
            drawn.append((x1, y1, x2, y2, int(labels[i]), ix, iy))
            mask[iy, ix] = True
    for x1, y1, x2, y2, c, ix, iy in drawn:
        bw, bh = x2 - x1, y2 - y1
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        sx, sy = max(SIGMA_SCALE * bw, MIN_SIGMA), max(SIGMA_SCALE * bh, MIN_SIGMA)
        splat = torch.exp(-((xs - ix) ** 2 / (2 * sx * sx) + (ys - iy) ** 2 / (2 * sy * sy)))  # (h, w)
        torch.maximum(heatmap[c], splat, out=heatmap[c])
        inside = ((xs - cx).abs() <= region * bw / 2) & ((ys - cy).abs() <= region * bh / 2) & ~mask
        inside[iy, ix] = True  # its centre cell always regresses it; other boxes' centres never do
        share = splat[inside]
        weight[inside] = share / share.sum()
        size[:, inside] = torch.tensor([[math.log(bw)], [math.log(bh)]])
        offset[0, inside] = cx - xs.expand(h, w)[inside]
        offset[1, inside] = cy - ys.expand(h, w)[inside]
    return {"heatmap": heatmap, "size": size, "offset": offset, "reg_mask": mask, "reg_weight": weight}


def render_batch(boxes: list[Tensor], labels: list[Tensor], *, num_classes: int, map_size: tuple[int, int],
                 stride: int, region: float = REGRESSION_REGION) -> dict[str, Tensor]:
    """``render_targets`` for each image, stacked: heatmap (N, C, h, w), size/offset
    (N, 2, h, w), reg_mask and reg_weight (N, h, w)."""
    per_image = [render_targets(b, l, num_classes=num_classes, map_size=map_size, stride=stride, region=region)
                 for b, l in zip(boxes, labels)]
    return {k: torch.stack([t[k] for t in per_image]) for k in TARGET_KEYS}

