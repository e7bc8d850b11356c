"""PASCAL VOC XML detection annotations (one ``<object>`` per box).

Two layouts are recognised::

    root/JPEGImages/*.jpg  root/Annotations/*.xml  root/ImageSets/Main/{split}.txt   (VOC)
    root/images/*.jpg      root/annotations/*.xml                                    (raccoon etc.)

Without split lists, ``train``/``val`` come from ``fcnkit.data.splits.split_items``
(seeded, by sorted file name); ``all`` is every annotated image.

VOC pixel indices are 1-based and inclusive, so ``<xmin>1</xmin><xmax>10</xmax>``
covers pixels 0..9, i.e. the continuous box x1 = xmin - 1 = 0, x2 = xmax = 10.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import torch

from .base import inside
from .detection import DetectionDataset, check_boxes
from .image_io import DataError, unreadable_reason
from .splits import split_items

IMAGE_EXTS = (".jpg", ".jpeg", ".png")


def parse_voc_xml(path: Path) -> tuple[str | None, tuple[int, int] | None, list[tuple[str, list[float], bool]]]:
    """(filename, declared (H, W) or None, [(class name, [x1, y1, x2, y2], difficult), ...])."""
    reason = unreadable_reason(path)
    if reason is not None:
        raise DataError(f"{path}: {reason}")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise DataError(f"{path}: malformed XML ({e})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e})") from None
    size = root.find("size")
    declared = None
    if size is not None and size.findtext("width") and size.findtext("height"):
        declared = (int(float(size.findtext("height"))), int(float(size.findtext("width"))))
        if declared[0] <= 0 or declared[1] <= 0:
            declared = None  # some tools write 0x0; the image itself is the truth
    objects = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        if not name or box is None:
            raise DataError(f"{path}: <object> without <name> or <bndbox>")
        try:
            xmin, ymin, xmax, ymax = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            raise DataError(f"{path}: <bndbox> of {name!r} lacks a numeric xmin/ymin/xmax/ymax") from None
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        objects.append((name, [xmin - 1, ymin - 1, xmax, ymax], difficult))
    return root.findtext("filename"), declared, objects


def _objects_or_none(path: Path) -> list:
    try:
        return parse_voc_xml(path)[2]
    except DataError:
        return []  # reported by the split that contains it


class VOCDetection(DetectionDataset):
    """VOC-XML boxes. ``classes`` defaults to the sorted set of names found in all the
    annotations of the folder (so a single-class set like raccoon gives ``["raccoon"]``
    and train/val agree); pass it to fix the label order (e.g. the 20 VOC classes).
    Difficult objects are kept."""

    def __init__(self, root: str | Path, split: str = "train", transforms: Callable | None = None, *,
                 classes: list[str] | None = None, val_fraction: float = 0.2, seed: int = 0) -> None:
        root = Path(root)
        if (root / "Annotations").is_dir():
            image_dir, annot_dir = root / "JPEGImages", root / "Annotations"
        elif (root / "annotations").is_dir():
            image_dir, annot_dir = root / "images", root / "annotations"
        else:
            raise FileNotFoundError(f"{root}: no Annotations/ or annotations/ folder of VOC XML files")
        list_file = root / "ImageSets" / "Main" / f"{split}.txt"
        if list_file.is_file():
            xmls = [annot_dir / f"{line.split()[0]}.xml" for line in list_file.read_text().splitlines() if line.strip()]
        else:
            xmls = split_items(sorted(annot_dir.glob("*.xml")), split, val_fraction=val_fraction, seed=seed)
        files, problems, self._objects = [], [], []
        for xml in xmls:
            reason = unreadable_reason(xml)
            if reason is not None:  # e.g. missing, or a symbolic link loop
                problems.append(f"{xml}: listed in {list_file.name} but missing" if reason == "no such file"
                                else f"{xml}: {reason}")
                continue
            try:
                filename, declared, objects = parse_voc_xml(xml)
            except DataError as e:
                problems.append(str(e))
                continue
            if filename and inside(image_dir, filename) is None:
                problems.append(f"{xml}: <filename> {filename!r} points outside {image_dir}; refused")
                continue
            image = self._find_image(image_dir, xml.stem, filename)
            if image is None:
                problems.append(f"{xml}: no image {filename or xml.stem + '.*'} in {image_dir}")
                continue
            files.append((image, xml))
            self._objects.append((declared, objects))
        if classes is None:  # from every annotation, not just this split, so train and val agree
            parsed = {xml: objs for xml, (_, objs) in zip((f[1] for f in files), self._objects)}
            classes = sorted({name for xml in sorted(annot_dir.glob("*.xml"))
                              for name, _, _ in (parsed[xml] if xml in parsed else _objects_or_none(xml))})
        self.root, self.split = root, split
        super().__init__(files, classes, transforms, problems)
        self._index = {c: i for i, c in enumerate(self.classes)}

    @staticmethod
    def _find_image(image_dir: Path, stem: str, filename: str | None) -> Path | None:
        candidates = ([image_dir / filename] if filename else []) + [image_dir / (stem + e) for e in IMAGE_EXTS]
        return next((p for p in candidates if p.is_file()), None)

    def load_target(self, index: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int] | None]:
        path = self.files[index][1]
        declared, objects = self._objects[index]
        unknown = sorted({name for name, _, _ in objects if name not in self._index})
        if unknown:
            raise DataError(f"{path}: class(es) {unknown} not in {self.classes}")
        boxes = torch.tensor([b for _, b, _ in objects], dtype=torch.float32).reshape(-1, 4)  # (K, 4)
        labels = torch.tensor([self._index[name] for name, _, _ in objects], dtype=torch.int64)
        return check_boxes(boxes, path), labels, declared
