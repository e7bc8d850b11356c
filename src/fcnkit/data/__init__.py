"""Datasets in the formats the field publishes, joint transforms, and batching.

See ``fcnkit.data.base`` for the sample contract every dataset follows. The names are
loaded on first use (PEP 562): ``fcnkit.data.fetch`` (the ``fcnkit data fetch`` sources)
and other light modules import without torch.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

# public name -> the submodule that defines it
_LAZY = {"IGNORE_INDEX": "base", "SegmentationDataset": "base", "CamVid": "camvid", "Cityscapes": "cityscapes",
         "COCODetection": "coco", "pad_collate": "collate", "DetectionDataset": "detection",
         "FolderSegmentation": "folder", "FORMATS": "formats", "build_dataset": "formats",
         "detect_format": "formats", "parse_spec": "formats", "DataError": "image_io", "read_image_tensor": "image_io",
         "KittiRoad": "kitti_road", "split_items": "splits", "eval_transforms": "transforms",
         "train_transforms": "transforms", "SBDSegmentation": "voc", "VOCSegmentation": "voc",
         "VOCDetection": "voc_xml"}

__all__ = ["IGNORE_INDEX", "SegmentationDataset", "DetectionDataset", "CamVid", "Cityscapes", "KittiRoad",
           "VOCSegmentation", "SBDSegmentation", "FolderSegmentation", "VOCDetection", "COCODetection",
           "pad_collate", "FORMATS", "build_dataset", "detect_format", "parse_spec", "DataError", "read_image_tensor",
           "split_items", "eval_transforms", "train_transforms"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f".{name}", __name__)  # a submodule, as before the laziness
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
