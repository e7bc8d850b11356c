"""Metrics: the paper's confusion-matrix scores, KITTI road MaxF (and detection mAP)."""

from .kitti import RoadMaxF
from .segmentation import ConfusionMatrix, confusion_matrix, scores

__all__ = ["ConfusionMatrix", "RoadMaxF", "confusion_matrix", "scores"]
