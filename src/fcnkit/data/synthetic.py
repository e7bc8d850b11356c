"""Procedurally generated street scenes: a dataset anyone can train on in minutes.

Each scene has a perspective road with dashed lane markings, pavements, buildings
with windows under a sky, cars (with boxes) and pedestrians. Colours are jittered
per scene and per pixel, so no single colour identifies a class: the net must use
context, and thin structures (lane marks, pedestrians, poles of width ~2 px) are
exactly where FCN-8s's skip connections beat FCN-32s. Deterministic by seed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from ..heads import BOXES, SEG
from .base import IGNORE_INDEX

CLASSES = ["sky", "building", "road", "lane marking", "pavement", "car", "pedestrian"]
PALETTE = [(70, 130, 180), (70, 70, 70), (128, 64, 128), (255, 255, 255), (244, 35, 232), (0, 0, 142),
           (220, 20, 60)]
SKY, BUILDING, ROAD, LANE, PAVEMENT, CAR, PEDESTRIAN = range(len(CLASSES))
CAR_LABEL = 0  # the one detection class ("car")

# base colour of each class; scenes jitter these so colour alone is ambiguous
_BASE = np.array([(135, 170, 210), (150, 120, 100), (95, 95, 100), (235, 235, 220), (165, 160, 150),
                  (180, 40, 40), (60, 80, 150)], dtype=np.float32)


def generate_street_scene(seed: int, size: tuple[int, int] = (96, 128)) -> dict[str, np.ndarray]:
    """One scene: ``image`` uint8 (H, W, 3), ``mask`` uint8 (H, W) with classes of
    ``CLASSES``, ``boxes`` float32 (K, 4) XYXY of the cars, ``labels`` int64 (K,)."""
    rng = np.random.default_rng(seed)
    h, w = size
    mask = np.zeros((h, w), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    horizon = int(h * rng.uniform(0.35, 0.5))
    vx = w * rng.uniform(0.35, 0.65)  # vanishing point x

    # buildings: rectangles standing on the horizon, windows as darker cells
    x = int(rng.integers(-10, 5))
    while x < w:
        bw = int(rng.integers(w // 10, w // 4))
        top = int(rng.integers(2, max(3, horizon - 4)))
        mask[top:horizon, max(x, 0):x + bw] = BUILDING
        x += bw + int(rng.integers(0, 6))

    # road: a trapezoid from the vanishing point widening to the bottom edge
    t = np.clip((yy - horizon) / max(h - horizon, 1), 0, 1)  # 0 at the horizon, 1 at the bottom
    half = t * w * rng.uniform(0.45, 0.7)
    centre = vx + (w / 2 - vx) * t
    below = yy >= horizon
    road = below & (np.abs(xx - centre) <= half)
    pavement = below & ~road & (np.abs(xx - centre) <= half * 1.5 + 2)
    mask[below] = BUILDING  # ground beyond the pavement is built-up frontage
    mask[pavement] = PAVEMENT
    mask[road] = ROAD

    # lane markings: dashed, width growing with perspective
    dash = ((yy - horizon) // max(2, (h - horizon) // 8)) % 2 == 0
    lane = road & dash & (np.abs(xx - centre) <= 0.6 + 0.025 * w * t)
    mask[lane] = LANE

    # cars on the road, sized by perspective; drawn far to near so near ones occlude
    boxes = []
    n_cars = int(rng.integers(1, 4))
    rows = np.sort(rng.uniform(0.25, 0.95, n_cars))
    for r in rows:
        cy = horizon + r * (h - horizon)
        scale = r * (h - horizon) / h
        cw, ch = w * 0.35 * scale + 4, h * 0.22 * scale + 3
        lane_pos = rng.uniform(-0.6, 0.6)
        cx = vx + (w / 2 - vx) * r + lane_pos * r * w * 0.5
        x0, x1 = int(round(cx - cw / 2)), int(round(cx + cw / 2))
        y1, y0 = int(round(cy)), int(round(cy - ch))
        x0c, x1c, y0c, y1c = max(x0, 0), min(x1, w), max(y0, 0), min(y1, h)
        if x1c - x0c < 3 or y1c - y0c < 3:
            continue
        mask[y0c:y1c, x0c:x1c] = CAR
        boxes.append([x0c, y0c, x1c, y1c])

    # pedestrians on the pavements: thin bodies with a head
    for _ in range(int(rng.integers(1, 5))):
        r = rng.uniform(0.2, 0.95)
        py = int(horizon + r * (h - horizon))
        side = rng.choice([-1, 1])
        px = int(vx + (w / 2 - vx) * r + side * r * w * rng.uniform(0.5, 0.7) * 1.2)
        ph = int(4 + r * h * 0.3)
        pw = max(1, int(1 + r * w * 0.02))
        if 0 <= px < w:
            mask[max(py - ph, 0):py, max(px - pw, 0):min(px + pw, w)] = PEDESTRIAN

    mask[:horizon][mask[:horizon] == 0] = SKY

    # colours: per-scene jitter of each class colour, per-pixel noise, soft shading
    colours = np.clip(_BASE + rng.normal(0, 18, _BASE.shape), 0, 255)
    image = colours[mask]
    image += rng.normal(0, 10, image.shape)
    image *= (0.85 + 0.3 * (yy / h))[..., None] if rng.random() < 0.5 else 1.0
    windows = (mask == BUILDING) & (yy % 6 < 3) & (xx % 7 < 3) & (yy < horizon)
    image[windows] *= 0.55  # windows: darker cells, still labelled building
    image = np.clip(image, 0, 255).astype(np.uint8)
    box_array = np.array(boxes, np.float32).reshape(-1, 4)
    return {"image": image, "mask": mask, "boxes": box_array,
            "labels": np.full(len(box_array), CAR_LABEL, np.int64)}


class SyntheticStreets(Dataset):
    """``n`` generated scenes (seeds ``seed .. seed+n-1``) in the fcnkit sample contract:
    image + {"mask", "boxes", "labels"}; box label 0 is "car"."""

    classes = CLASSES
    palette = PALETTE
    ignore_index = IGNORE_INDEX
    box_classes = ["car"]
    heads = frozenset({SEG, BOXES})  # masks, and a box per car

    def __init__(self, n: int = 200, *, size: tuple[int, int] = (96, 128), seed: int = 0,
                 transforms: Callable | None = None) -> None:
        self.n, self.size, self.seed, self.transforms = n, size, seed, transforms
        self.files: list = []  # generated: nothing on disk

    def __len__(self) -> int:
        return self.n

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __getitem__(self, index: int):
        if not 0 <= index < self.n:
            raise IndexError(index)
        s = generate_street_scene(self.seed + index, self.size)
        h, w = self.size
        image = tv_tensors.Image(torch.from_numpy(s["image"]).permute(2, 0, 1).contiguous())  # (3, H, W)
        target = {"mask": tv_tensors.Mask(torch.from_numpy(s["mask"]).long()),
                  "boxes": tv_tensors.BoundingBoxes(torch.from_numpy(s["boxes"]), format="XYXY", canvas_size=(h, w)),
                  "labels": torch.from_numpy(s["labels"])}
        return self.transforms(image, target) if self.transforms is not None else (image, target)
