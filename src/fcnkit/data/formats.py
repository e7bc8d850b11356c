"""Dataset formats by name, auto-detection from a folder's layout, and ``build_dataset``.

A dataset spec is ``FORMAT:PATH`` (e.g. ``camvid:/data/CamVid``) or just ``PATH``,
in which case the format is recognised from the folder's layout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from .mixed import MixedDataset
from .splits import select_split


@dataclass(frozen=True)
class Format:
    """How to recognise a layout, how to build it, and which splits ``data check`` reads."""

    name: str
    looks_like: Callable[[Path], bool]
    build: Callable[[Path, str, Callable | None], Dataset]
    splits: Callable[[Path], list[str]]  # the splits present at a root (what `data check` walks)


def _builder(module: str, cls: str, **options) -> Callable[[Path, str, Callable | None], Dataset]:
    """Import the format's module only when it is used."""
    def build(root: Path, split: str, transforms: Callable | None) -> Dataset:
        import importlib

        return getattr(importlib.import_module(f"fcnkit.data.{module}"), cls)(root, split, transforms, **options)
    return build


def _voc_root(root: Path) -> Path:
    return root / "VOC2012" if (root / "VOC2012").is_dir() else root


def _sbd_root(root: Path) -> Path:
    return next((root / s for s in ("benchmark_RELEASE/dataset", "dataset") if (root / s / "cls").is_dir()), root)


def _kitti_root(root: Path) -> Path:
    return root / "data_road" if (root / "data_road").is_dir() else root


def _coco_splits(root: Path) -> list[str]:
    from .coco import find_coco_json

    found = []
    for split in ("train", "val", "test"):
        try:
            if find_coco_json(root, split)[1]:
                found.append(split)
        except FileNotFoundError:
            pass
    return found or ["all"]


def _existing(*splits: str, marker: Callable[[Path, str], bool]) -> Callable[[Path], list[str]]:
    return lambda root: [s for s in splits if marker(root, s)]


def _is_coco(root: Path) -> bool:
    candidates = [root] if root.is_file() else [*root.glob("*.json"), *root.glob("annotations/*.json")]
    for path in candidates[:4]:
        try:
            with open(path, "rb") as f:
                head = f.read(1 << 16).decode("utf-8", "ignore")
        except OSError:
            continue
        if path.suffix == ".json" and any(f'"{key}"' in head for key in ("images", "categories", "annotations")):
            return True
    return False


_VOC_XML_DIRS = ("Annotations", "annotations")

# most specific layouts first: detection tries them in this order
FORMATS: dict[str, Format] = {f.name: f for f in [
    Format("camvid", lambda r: any((r / f"{s}annot").is_dir() for s in ("train", "val", "test")),
           _builder("camvid", "CamVid"),
           _existing("train", "val", "test", marker=lambda r, s: (r / f"{s}.txt").is_file() or (r / s).is_dir())),
    Format("cityscapes", lambda r: (r / "leftImg8bit").is_dir() and (r / "gtFine").is_dir(),
           _builder("cityscapes", "Cityscapes"),
           _existing("train", "val", marker=lambda r, s: (r / "gtFine" / s).is_dir())),
    Format("kitti_road", lambda r: (_kitti_root(r) / "training" / "gt_image_2").is_dir(),
           _builder("kitti_road", "KittiRoad"), lambda r: ["all"]),
    Format("voc", lambda r: (_voc_root(r) / "SegmentationClass").is_dir(), _builder("voc", "VOCSegmentation"),
           _existing("train", "val", marker=lambda r, s: (_voc_root(r) / f"ImageSets/Segmentation/{s}.txt").is_file())),
    Format("sbd", lambda r: (_sbd_root(r) / "cls").is_dir() and (_sbd_root(r) / "img").is_dir(),
           _builder("voc", "SBDSegmentation"),
           _existing("train", "val", marker=lambda r, s: (_sbd_root(r) / f"{s}.txt").is_file())),
    Format("folder", lambda r: any((b / "images").is_dir() and (b / "masks").is_dir() for b in (r, r / "train")),
           _builder("folder", "FolderSegmentation"),
           lambda r: _existing("train", "val", "test", marker=lambda r, s: (r / s / "images").is_dir())(r) or ["all"]),
    Format("yolo", lambda r: (r / "images").is_dir() and (r / "labels").is_dir(), _builder("yolo", "YOLODetection"),
           lambda r: _existing("train", "val", "test", marker=lambda r, s: (r / "images" / s).is_dir())(r) or ["all"]),
    Format("voc_xml", lambda r: any(next((r / d).glob("*.xml"), None) for d in _VOC_XML_DIRS if (r / d).is_dir()),
           _builder("voc_xml", "VOCDetection"),
           lambda r: _existing("train", "val", marker=lambda r, s: (r / f"ImageSets/Main/{s}.txt").is_file())(r)
           or ["all"]),
    Format("coco", _is_coco, _builder("coco", "COCODetection"), _coco_splits),
    # the same files with their instance polygons as a semantic mask: named, never detected
    Format("coco_joint", lambda r: False, _builder("coco", "COCODetection", masks=True), _coco_splits),
    Format("kitti_object", lambda r: (r / "training" / "label_2").is_dir() or (r / "label_2").is_dir(),
           _builder("kitti_object", "KittiObjectDetection"), lambda r: ["all"]),
]}


def detect_format(root: str | Path) -> str:
    """The format name whose layout ``root`` matches; ValueError naming what was looked for."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: dataset path not found")
    for name, fmt in FORMATS.items():
        if fmt.looks_like(root):
            return name
    raise ValueError(f"{root}: cannot recognise the dataset layout; pass the format explicitly "
                     f"as FORMAT:PATH with FORMAT one of {', '.join(FORMATS)}")


def parse_spec(spec: str | Path) -> tuple[str, Path]:
    """``'camvid:/data/x'`` -> ``('camvid', Path('/data/x'))``; a bare path is auto-detected."""
    text = str(spec)
    name, sep, rest = text.partition(":")
    if sep and name in FORMATS:
        return name, Path(rest)
    if sep and len(name) > 1 and not Path(text).exists():  # 'C:\\data' stays a path
        raise ValueError(f"unknown dataset format {name!r} in {text!r}; known: {', '.join(FORMATS)}")
    return detect_format(text), Path(text)


def build_dataset(spec: str | Path | Sequence[str | Path], split: str = "train",
                  transforms: Callable | None = None) -> Dataset:
    """A dataset from ``FORMAT:PATH`` or ``PATH`` (format auto-detected); a list of specs
    gives one ``MixedDataset`` over all of them (e.g. masks from one, boxes from another).
    ``split`` is a split name or a split expression (``"train+val"``, ``"train@!0006R0"``:
    ``fcnkit.data.splits``)."""
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ValueError("data: an empty list of dataset specs")
        return MixedDataset([build_dataset(s, split, transforms) for s in spec], names=[str(s) for s in spec])
    name, root = parse_spec(spec)
    return select_split(lambda s: FORMATS[name].build(root, s, transforms), split, source=str(spec))
