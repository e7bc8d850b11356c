"""Prediction: images and video of any size, whole or tiled, with test-time augmentation."""

from .images import ImageReadError, read_rgb_array
from .predictor import Failure, Prediction, Predictor
from .tiling import TilePlan, parse_memory

__all__ = ["Predictor", "Prediction", "Failure", "TilePlan", "ImageReadError", "read_rgb_array", "parse_memory"]
