"""COCO JSON: boxes, and with ``masks`` (format ``coco_joint``) also the polygons/RLEs
rasterised into a semantic mask, so one dataset feeds both heads of a joint model.

Recognised layouts (``split`` = train/val/...)::

    root/annotations/instances_{split}2017.json + root/{split}2017/       (COCO)
    root/annotations/{split}.json or root/{split}.json + root/images/      (exports)
    root/annotations.json + root/images/    (one file; train/val by a seeded split)

or ``root`` may be the JSON file itself. COCO boxes are ``[x, y, w, h]`` in pixels and
become XYXY. Category ids (often non-contiguous) map to labels 0..K-1 in id order;
``iscrowd`` annotations are not boxes (in the mask they are the ignore index).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torchvision import tv_tensors

from ..extras import require
from ..heads import BOXES, SEG
from .base import IGNORE_INDEX, Sample, default_palette, inside
from .detection import DetectionDataset, check_boxes
from .image_io import DataError
from .splits import split_items


def find_coco_json(root: Path, split: str) -> tuple[Path, bool]:
    """(annotation file, whether it holds only this split) for ``root`` and ``split``."""
    if root.is_file():
        return root, True
    for pattern in (f"annotations/instances_{split}*.json", f"annotations/{split}.json", f"{split}.json"):
        found = sorted(root.glob(pattern))
        if found:
            return found[0], True
    for candidate in (root / "annotations.json", root / "annotations" / "annotations.json"):
        if candidate.is_file():
            return candidate, False
    raise FileNotFoundError(f"{root}: no COCO JSON for split {split!r} (looked for annotations/instances_{split}*.json, "
                            f"annotations/{split}.json, {split}.json, annotations.json)")


def _image_dirs(root: Path, json_path: Path, split: str) -> list[Path]:
    base = json_path.parent.parent if json_path.parent.name == "annotations" else json_path.parent
    tag = json_path.stem.removeprefix("instances_")  # instances_train2017 -> train2017
    return [base / tag, base / "images" / split, base / "images", base / split, base]


class COCODetection(DetectionDataset):
    """COCO-format boxes; with ``masks=True`` also a ``"mask"`` target rasterised with
    pycocotools, and the dataset is ``"joint"``: ``classes`` (the mask's) are
    ``"background"`` = 0 then the categories, ``box_classes`` the categories alone; a box
    labelled k is category k of ``box_classes`` and its pixels are k + 1 in the mask."""

    def __init__(self, root: str | Path, split: str = "train", transforms: Callable | None = None, *,
                 masks: bool = False, val_fraction: float = 0.2, seed: int = 0) -> None:
        root = Path(root)
        json_path, split_only = find_coco_json(root, split)
        try:
            data = json.loads(json_path.read_text())
            images = {im["id"]: im for im in data["images"]}
            categories = sorted(data["categories"], key=lambda c: c["id"])
            annotations = data.get("annotations", [])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DataError(f"{json_path}: not a COCO annotation file ({type(e).__name__}: {e})") from None
        self.masks = masks
        if masks:
            require("detection", "pycocotools")  # the polygons and RLEs are rasterised with it
        self._label_of = {c["id"]: i for i, c in enumerate(categories)}  # box labels 0..K-1
        per_image: dict[int, list[dict]] = {i: [] for i in images}
        problems = []
        for ann in annotations:
            if ann.get("image_id") not in per_image:
                problems.append(f"{json_path}: annotation {ann.get('id')} refers to unknown image {ann.get('image_id')}")
            elif ann.get("category_id") not in self._label_of:
                problems.append(f"{json_path}: annotation {ann.get('id')} has unknown category {ann.get('category_id')}")
            else:
                per_image[ann["image_id"]].append(ann)
        dirs = _image_dirs(root, json_path, split)
        image_dir = next((d for d in dirs if d.is_dir() and any(
            (p := inside(d, str(im.get("file_name", "")))) is not None and p.is_file() for im in images.values())),
            dirs[0])
        entries = []
        for image_id, im in images.items():
            path = inside(image_dir, str(im.get("file_name", "")))
            if path is None:
                problems.append(f"{json_path}: image {image_id} file_name {im.get('file_name')!r} points outside "
                                f"{image_dir}; refused")
            elif path.is_file():
                entries.append((path, image_id))
            else:
                problems.append(f"{path}: image {image_id} of {json_path.name} is missing")
        entries = sorted(entries) if split_only else split_items(entries, split, val_fraction=val_fraction, seed=seed)
        self._records = [(images[i], per_image[i]) for _, i in entries]
        self.root, self.split, self.json_path = root, split, json_path
        names = [c["name"] for c in categories]
        super().__init__([(p, json_path) for p, _ in entries], names, transforms, problems)
        if masks:
            self.heads, self.box_classes = frozenset({SEG, BOXES}), names
            self.classes = ["background", *names]
            self.palette = default_palette(len(self.classes))  # background black, as segmentation data has

    def load_target(self, index: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int] | None]:
        im, anns = self._records[index]
        anns = [a for a in anns if not a.get("iscrowd", 0)]
        try:
            xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)  # (K, 4)
        except (KeyError, ValueError, TypeError):
            raise DataError(f"{self.json_path}: image {im['file_name']}: annotation without a numeric bbox") from None
        boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)  # XYWH -> XYXY
        labels = torch.tensor([self._label_of[a["category_id"]] for a in anns], dtype=torch.int64)
        declared = (int(im["height"]), int(im["width"])) if "height" in im and "width" in im else None
        return check_boxes(boxes, Path(f"{self.json_path}[{im['file_name']}]")), labels, declared

    def load_raw(self, index: int) -> Sample:
        image, target = super().load_raw(index)
        if self.masks:
            target["mask"] = tv_tensors.Mask(torch.from_numpy(self._rasterise(index, *image.shape[-2:])))
        return image, target

    def _rasterise(self, index: int, h: int, w: int) -> np.ndarray:
        """Semantic mask int64 (H, W): 0 background, category label, crowd = ignore.
        Larger instances are painted first so small ones stay visible where they overlap."""
        require("detection", "pycocotools")
        from pycocotools import mask as mask_utils

        im, anns = self._records[index]
        out = np.zeros((h, w), dtype=np.int64)
        for ann in sorted(anns, key=lambda a: -float(a.get("area", 0))):
            seg = ann.get("segmentation")
            if not seg:
                continue
            if isinstance(seg, list):  # polygons
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
            elif isinstance(seg.get("counts"), list):  # uncompressed RLE
                rle = mask_utils.frPyObjects(seg, h, w)
            else:
                rle = seg
            with warnings.catch_warnings():  # pycocotools' own numpy-2 copy= deprecation, not ours
                warnings.simplefilter("ignore", DeprecationWarning)
                m = mask_utils.decode(rle).astype(bool)
            out[m] = IGNORE_INDEX if ann.get("iscrowd", 0) else self._label_of[ann["category_id"]] + 1
        return out
