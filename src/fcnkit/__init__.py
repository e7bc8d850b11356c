"""fcnkit: Fully Convolutional Networks (Long, Shelhamer & Darrell 2015), made usable."""

from .inference import Predictor
from .models import create_model, list_models

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "Predictor", "__version__"]
