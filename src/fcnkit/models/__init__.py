"""Models: encoders, the FCN skip decoder, and the one registry that names them."""

from . import segmentation  # noqa: F401  (registers the FCN builders)
from . import detection  # noqa: F401  (registers the detection and joint builders)
from .fcn import FCN, FCNDecoder
from .registry import create_model, list_models, register_model
from ..preprocessing import CAFFE_VGG, IMAGENET, Preprocessing

__all__ = ["FCN", "FCNDecoder", "create_model", "list_models", "register_model",
           "Preprocessing", "IMAGENET", "CAFFE_VGG"]
