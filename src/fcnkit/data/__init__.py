"""Datasets in the formats the field publishes, joint transforms, and batching.

See ``fcnkit.data.base`` for the sample contract every dataset follows.
"""

from .base import IGNORE_INDEX, SegmentationDataset
from .camvid import CamVid
from .cityscapes import Cityscapes
from .coco import COCODetection
from .collate import pad_collate
from .detection import DetectionDataset
from .folder import FolderSegmentation
from .formats import FORMATS, build_dataset, detect_format, parse_spec
from .image_io import DataError, read_image
from .kitti_road import KittiRoad
from .splits import split_items
from .transforms import eval_transforms, train_transforms
from .voc import SBDSegmentation, VOCSegmentation
from .voc_xml import VOCDetection

__all__ = ["IGNORE_INDEX", "SegmentationDataset", "DetectionDataset", "CamVid", "Cityscapes", "KittiRoad",
           "VOCSegmentation", "SBDSegmentation", "FolderSegmentation", "VOCDetection", "COCODetection",
           "pad_collate", "FORMATS", "build_dataset", "detect_format", "parse_spec", "DataError", "read_image",
           "split_items", "eval_transforms", "train_transforms"]
