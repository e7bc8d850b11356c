"""Fully convolutional detection: targets, losses, decoding and training for the
"objects as points" head of ``fcnkit.models.detection``."""

from .batching import DetectionCollate
from .decode import decode
from .losses import detection_loss, heatmap_focal_loss, joint_loss, masked_l1
from .targets import render_batch, render_targets

__all__ = ["DetectionCollate", "decode", "detection_loss", "heatmap_focal_loss", "joint_loss", "masked_l1",
           "render_batch", "render_targets"]
