"""Prediction: images and video of any size, whole or tiled, with test-time augmentation."""

from .images import ImageReadError, read_image
from .predictor import Failure, Prediction, Predictor
from .tiling import TilePlan, parse_memory

__all__ = ["Predictor", "Prediction", "Failure", "TilePlan", "ImageReadError", "read_image", "parse_memory"]
