"""Cityscapes fine annotations: ``gtFine/*_labelIds.png`` mapped to the 19 train ids.

::

    root/leftImg8bit/{split}/{city}/{name}_leftImg8bit.png
    root/gtFine/{split}/{city}/{name}_gtFine_labelIds.png

The 34 label ids are mapped to the 19 evaluated classes (Cordts et al. 2016, the
``trainId`` column of cityscapesScripts' labels.py); every other id is ignored.
Where ``{name}_gtFine_instanceIds.png`` exists (values >= 1000 are
``label id * 1000 + instance``), each sample also has one box per instance of the 8
"thing" classes (person ... bicycle), so one dataset feeds a joint model's two heads.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .base import IGNORE_INDEX, SegmentationDataset, boxes_from_instances
from .image_io import DataError, read_label_map

# (name, label id, colour) of the 19 train ids, in train-id order
TRAIN_CLASSES = [
    ("road", 7, (128, 64, 128)), ("sidewalk", 8, (244, 35, 232)), ("building", 11, (70, 70, 70)),
    ("wall", 12, (102, 102, 156)), ("fence", 13, (190, 153, 153)), ("pole", 17, (153, 153, 153)),
    ("traffic light", 19, (250, 170, 30)), ("traffic sign", 20, (220, 220, 0)), ("vegetation", 21, (107, 142, 35)),
    ("terrain", 22, (152, 251, 152)), ("sky", 23, (70, 130, 180)), ("person", 24, (220, 20, 60)),
    ("rider", 25, (255, 0, 0)), ("car", 26, (0, 0, 142)), ("truck", 27, (0, 0, 70)), ("bus", 28, (0, 60, 100)),
    ("train", 31, (0, 80, 100)), ("motorcycle", 32, (0, 0, 230)), ("bicycle", 33, (119, 11, 32)),
]
NUM_LABEL_IDS = 34  # label ids 0..33 (license plate's -1 never appears in labelIds PNGs)
LABEL_TO_TRAIN = np.full(256, IGNORE_INDEX, dtype=np.int64)
for _train_id, (_, _label_id, _) in enumerate(TRAIN_CLASSES):
    LABEL_TO_TRAIN[_label_id] = _train_id


FIRST_THING = 11  # train ids 11..18 (person, rider, car, truck, bus, train, motorcycle, bicycle) have instances


class Cityscapes(SegmentationDataset):
    """Cityscapes ``leftImg8bit`` + ``gtFine`` labelIds, as 19 classes (boxes of the 8 thing
    classes from ``instanceIds`` where present)."""

    classes = [name for name, _, _ in TRAIN_CLASSES]
    palette = [colour for _, _, colour in TRAIN_CLASSES]
    box_classes = classes[FIRST_THING:]

    def __init__(self, root: str | Path, split: str = "train", transforms: Callable | None = None) -> None:
        root = Path(root)
        image_root, gt_root = root / "leftImg8bit" / split, root / "gtFine" / split
        if not image_root.is_dir():
            raise FileNotFoundError(f"{image_root}: no such Cityscapes split folder")
        files, problems = [], []
        for image in sorted(image_root.glob("*/*_leftImg8bit.png")):
            stem = image.name.removesuffix("_leftImg8bit.png")
            gt = gt_root / image.parent.name / f"{stem}_gtFine_labelIds.png"
            if gt.is_file():
                files.append((image, gt))
            else:
                problems.append(f"{image}: no {gt.name} in {gt.parent}")
        self.root, self.split = root, split
        super().__init__(files, transforms, problems)

    def load_mask(self, path: Path) -> np.ndarray:
        ids = read_label_map(path)
        bad = (ids < 0) | (ids >= NUM_LABEL_IDS)
        if bad.any():
            raise DataError(f"{path}: values {np.unique(ids[bad])[:10].tolist()} are not Cityscapes label ids 0..33")
        return LABEL_TO_TRAIN[ids]

    def load_boxes(self, index: int, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor] | None:
        labels_path = self.files[index][1]
        path = labels_path.with_name(labels_path.name.replace("_gtFine_labelIds.png", "_gtFine_instanceIds.png"))
        if not path.is_file():
            return None
        instances = read_label_map(path)
        labels_of = {}
        for iid in np.unique(instances):
            train_id = LABEL_TO_TRAIN[iid // 1000] if iid >= 1000 else IGNORE_INDEX  # < 1000: no instance (crowd)
            if FIRST_THING <= train_id < len(TRAIN_CLASSES):
                labels_of[int(iid)] = int(train_id) - FIRST_THING
        return boxes_from_instances(instances, labels_of)
