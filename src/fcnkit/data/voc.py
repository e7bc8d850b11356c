"""PASCAL VOC 2012 segmentation and its usual training extension, SBD.

VOC 2012 (``root`` = ``VOCdevkit/VOC2012`` or ``VOCdevkit``)::

    JPEGImages/{id}.jpg   SegmentationClass/{id}.png (palette PNG, index = class,
    255 = object borders / "difficult", ignored)   ImageSets/Segmentation/{split}.txt

SBD (Hariharan et al., ``benchmark_RELEASE/dataset``)::

    img/{id}.jpg   cls/{id}.mat (GTcls.Segmentation, uint8 class index)   {train,val}.txt

The FCN paper trained on SBD train and validated on the VOC 2011 val images not in
SBD train ("seg11valid").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..extras import require
from .base import IGNORE_INDEX, SegmentationDataset, boxes_from_instances, default_palette
from .image_io import DataError, read_label_map

CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
           "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
           "tvmonitor"]
PALETTE = default_palette(len(CLASSES))


def _ids(list_file: Path) -> list[str]:
    return [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]


def _pairs(ids: list[str], image_dir: Path, image_ext: str, annot_dir: Path, annot_ext: str, list_file: Path
           ) -> tuple[list[tuple[Path, Path]], list[str]]:
    files, problems = [], []
    for i in ids:
        image, annot = image_dir / f"{i}{image_ext}", annot_dir / f"{i}{annot_ext}"
        missing = [p for p in (image, annot) if not p.is_file()]
        if missing:
            problems += [f"{p}: listed in {list_file.name} but missing" for p in missing]
        else:
            files.append((image, annot))
    return files, problems


class VOCSegmentation(SegmentationDataset):
    """VOC 2012 segmentation; ``split`` is any ``ImageSets/Segmentation/*.txt`` name.

    Where ``SegmentationObject/{id}.png`` (instance index per pixel, 0 background, 255
    border) exists, each sample also has one box per object, labelled with its class
    among the 20 object classes (``box_classes``: the classes without "background").
    """

    classes = CLASSES
    palette = PALETTE

    def __init__(self, root: str | Path, split: str = "train", transforms: Callable | None = None) -> None:
        root = Path(root)
        if (root / "VOC2012").is_dir():
            root = root / "VOC2012"
        list_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not list_file.is_file():
            raise FileNotFoundError(f"{list_file}: no such VOC segmentation split list")
        files, problems = _pairs(_ids(list_file), root / "JPEGImages", ".jpg", root / "SegmentationClass", ".png",
                                 list_file)
        self.root, self.split = root, split
        self.box_classes = CLASSES[1:] if (root / "SegmentationObject").is_dir() else []
        super().__init__(files, transforms, problems)

    def load_mask(self, path: Path) -> np.ndarray:
        return self.check_labels(read_label_map(path), path)

    def load_boxes(self, index: int, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor] | None:
        path = self.root / "SegmentationObject" / self.files[index][1].name
        if not path.is_file():
            return None
        instances = read_label_map(path)
        if instances.shape != mask.shape:
            raise DataError(f"{path}: instance map is {instances.shape[1]}x{instances.shape[0]} (WxH), its class "
                            f"map {mask.shape[1]}x{mask.shape[0]}")
        labels_of = {}
        for iid in np.unique(instances):
            if iid in (0, IGNORE_INDEX):
                continue
            classes = mask[(instances == iid) & (mask != IGNORE_INDEX)]
            cls = int(np.bincount(classes).argmax()) if classes.size else 0  # the class the object's pixels have
            if cls >= 1:
                labels_of[int(iid)] = cls - 1  # box classes are the 20 object classes
        return boxes_from_instances(instances, labels_of)


class SBDSegmentation(SegmentationDataset):
    """SBD's ``cls/*.mat`` class masks (same 21 classes as VOC; no ignore border)."""

    classes = CLASSES
    palette = PALETTE

    def __init__(self, root: str | Path, split: str = "train", transforms: Callable | None = None) -> None:
        root = Path(root)
        for sub in ("benchmark_RELEASE/dataset", "dataset"):
            if (root / sub / "cls").is_dir():
                root = root / sub
                break
        list_file = root / f"{split}.txt"
        if not list_file.is_file():
            raise FileNotFoundError(f"{list_file}: no such SBD split list")
        require("sbd", "scipy")  # its .mat label files: say so before training starts, not at the first sample
        files, problems = _pairs(_ids(list_file), root / "img", ".jpg", root / "cls", ".mat", list_file)
        self.root, self.split = root, split
        super().__init__(files, transforms, problems)

    def load_mask(self, path: Path) -> np.ndarray:
        require("sbd", "scipy")
        from scipy.io import loadmat
        from scipy.io.matlab import MatReadError

        try:
            gt = loadmat(str(path), squeeze_me=True, struct_as_record=False)["GTcls"]
            labels = np.asarray(gt.Segmentation).astype(np.int64)
        except (MatReadError, KeyError, AttributeError, ValueError, TypeError, OSError) as e:
            raise DataError(f"{path}: not an SBD cls .mat file with GTcls.Segmentation ({type(e).__name__}: {e})"
                            ) from None
        if labels.ndim != 2:
            raise DataError(f"{path}: GTcls.Segmentation has shape {labels.shape}, expected (H, W)")
        return self.check_labels(labels, path)
