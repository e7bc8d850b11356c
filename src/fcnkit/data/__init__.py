"""Datasets in the formats the field publishes, joint transforms, and batching.

See ``fcnkit.data.base`` for the sample contract every dataset follows.
"""

from .base import IGNORE_INDEX, SegmentationDataset
from .camvid import CamVid
from .collate import pad_collate
from .formats import FORMATS, build_dataset, detect_format, parse_spec
from .image_io import DataError, read_image
from .transforms import eval_transforms, train_transforms

__all__ = ["IGNORE_INDEX", "SegmentationDataset", "CamVid", "pad_collate", "FORMATS", "build_dataset",
           "detect_format", "parse_spec", "DataError", "read_image", "eval_transforms", "train_transforms"]
