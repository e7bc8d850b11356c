"""KITTI object detection: ``label_2`` text files (the format KittiBox / MultiNet trained on).

Layout as downloaded from the KITTI object benchmark::

    root/training/image_2/000000.png   root/training/label_2/000000.txt

One object per line, 15 space-separated fields (16 with a score in result files)::

    type truncated occluded alpha  left top right bottom  height width length  x y z  rotation_y [score]

``left top right bottom`` is the 2-D box in 0-based image pixels, used here as a
continuous XYXY box. ``DontCare`` lines mark regions with unlabelled objects; they
and every type not in ``classes`` are left out of the targets. KITTI has no public
validation split, so ``train``/``val`` come from ``fcnkit.data.splits.split_items``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .base import pair_by_stem
from .detection import DetectionDataset, check_boxes
from .image_io import DataError
from .splits import split_items

KITTI_TYPES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc", "DontCare")
BENCHMARK_CLASSES = ("Car", "Pedestrian", "Cyclist")  # the three classes KITTI ranks


@dataclass(frozen=True)
class KittiObject:
    """One ``label_2`` line. Box in pixels; dimensions (h, w, l) and location (x, y, z)
    in metres in camera coordinates; angles in radians."""

    type: str
    truncated: float
    occluded: int
    alpha: float
    box: tuple[float, float, float, float]
    dimensions: tuple[float, float, float]
    location: tuple[float, float, float]
    rotation_y: float
    score: float | None = None


def parse_kitti_label(path: str | Path) -> list[KittiObject]:
    """All objects of one label file; DataError naming the file and line on bad input."""
    path = Path(path)
    objects = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in (15, 16):
            raise DataError(f"{path}:{n}: expected 15 fields (16 with a score), got {len(fields)}: {line!r}")
        if fields[0] not in KITTI_TYPES:
            raise DataError(f"{path}:{n}: unknown object type {fields[0]!r}; KITTI types are {', '.join(KITTI_TYPES)}")
        try:
            v = [float(x) for x in fields[1:]]
        except ValueError:
            raise DataError(f"{path}:{n}: non-numeric field in {line!r}") from None
        objects.append(KittiObject(fields[0], v[0], int(v[1]), v[2], (v[3], v[4], v[5], v[6]),
                                   (v[7], v[8], v[9]), (v[10], v[11], v[12]), v[13],
                                   v[14] if len(v) == 15 else None))
    return objects


class KittiObjectDetection(DetectionDataset):
    """KITTI object boxes of ``classes`` (default Car, Pedestrian, Cyclist); label k is
    ``classes[k]``. Images without any object of those classes are kept (they are
    negatives a detector must learn from)."""

    def __init__(self, root: str | Path, split: str = "train", transforms: Callable | None = None, *,
                 classes: tuple[str, ...] | list[str] = BENCHMARK_CLASSES, val_fraction: float = 0.2,
                 seed: int = 0) -> None:
        root = Path(root)
        base = root / "training" if (root / "training").is_dir() else root
        image_dir, label_dir = base / "image_2", base / "label_2"
        if not label_dir.is_dir():
            raise FileNotFoundError(f"{root}: no training/label_2 (or label_2) folder of KITTI label files")
        unknown = sorted(set(classes) - set(KITTI_TYPES) - {"DontCare"})
        if unknown or "DontCare" in classes:
            raise ValueError(f"classes {unknown or ['DontCare']} are not KITTI object types {KITTI_TYPES[:-1]}")
        pairs, problems = pair_by_stem(image_dir, label_dir, annot_exts=(".txt",))
        self.root, self.split = root, split
        super().__init__(split_items(pairs, split, val_fraction=val_fraction, seed=seed), list(classes), transforms,
                         problems)
        self._index = {c: i for i, c in enumerate(self.classes)}

    def load_target(self, index: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int] | None]:
        path = self.files[index][1]
        kept = [o for o in parse_kitti_label(path) if o.type in self._index]
        boxes = torch.tensor([o.box for o in kept], dtype=torch.float32).reshape(-1, 4)  # (K, 4) XYXY
        labels = torch.tensor([self._index[o.type] for o in kept], dtype=torch.int64)
        return check_boxes(boxes, path), labels, None


__all__ = ["BENCHMARK_CLASSES", "KITTI_TYPES", "KittiObject", "KittiObjectDetection", "parse_kitti_label"]
