"""KITTI Road (Fritsch et al. 2013), the benchmark KittiSeg's FCN-8s topped.

::

    root[/data_road]/training/image_2/{cat}_{NNNNNN}.png          cat in um, umm, uu
    root[/data_road]/training/gt_image_2/{cat}_road_{NNNNNN}.png  (and um_lane_*.png)

Ground truth is colour coded: magenta (255, 0, 255) = road -> 1, red (255, 0, 0) =
not road -> 0, black = outside the valid area -> ignored. Only the training part
has ground truth, so ``train``/``val`` are a seeded split of it (``all`` = every image).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .base import SegmentationDataset
from .image_io import colors_to_labels, read_color_map
from .splits import split_items

CATEGORIES = ("um", "umm", "uu")
ROAD, NOT_ROAD, OUTSIDE = (255, 0, 255), (255, 0, 0), (0, 0, 0)


class KittiRoad(SegmentationDataset):
    """KITTI road (or ``gt="lane"``: ego lane, um only); ``categories`` filters um/umm/uu.
    ``self.categories[i]`` is sample i's category (KITTI scores each separately)."""

    classes = ["not road", "road"]
    palette = [NOT_ROAD, ROAD]

    def __init__(self, root: str | Path, split: str = "train", transforms: Callable | None = None, *,
                 gt: str = "road", categories: tuple[str, ...] = CATEGORIES, val_fraction: float = 0.2,
                 seed: int = 0) -> None:
        root = Path(root)
        if (root / "data_road").is_dir():
            root = root / "data_road"
        if gt not in ("road", "lane"):
            raise ValueError(f"KITTI gt must be 'road' or 'lane', not {gt!r}")
        if unknown := set(categories) - set(CATEGORIES):
            raise ValueError(f"unknown KITTI road categories {sorted(unknown)}; known: {CATEGORIES}")
        image_dir, gt_dir = root / "training" / "image_2", root / "training" / "gt_image_2"
        if not image_dir.is_dir():
            raise FileNotFoundError(f"{root}: no training/image_2 folder (KITTI road layout)")
        files, problems = [], []
        for image in sorted(image_dir.glob("*.png")):
            cat, _, number = image.stem.partition("_")
            if cat not in categories or (gt == "lane" and cat != "um"):
                continue
            annot = gt_dir / f"{cat}_{gt}_{number}.png"
            if annot.is_file():
                files.append((image, annot))
            else:
                problems.append(f"{image}: no {annot.name} in {gt_dir}")
        files = split_items(files, split, val_fraction=val_fraction, seed=seed)
        self.categories = [f[0].stem.partition("_")[0] for f in files]
        self.root, self.split, self.gt = root, split, gt
        super().__init__(files, transforms, problems)

    def load_mask(self, path: Path) -> np.ndarray:
        return colors_to_labels(read_color_map(path), self.palette, path=path, ignore_colors=(OUTSIDE,))
