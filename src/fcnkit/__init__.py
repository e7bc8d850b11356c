"""fcnkit: Fully Convolutional Networks (Long, Shelhamer & Darrell 2015), made usable.

``create_model`` builds a registered net, ``load`` rebuilds a saved one (a file or a
name from ``list_weights()``), and
``Predictor`` segments (and detects in) images and video of any size.
"""

from .inference import Predictor
from .models import create_model, list_models
from .models.saved import load_model as load
from .models.saved import save_model as save
from .models.zoo import get_weights, list_weights

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "load", "save", "Predictor", "get_weights", "list_weights",
           "__version__"]
