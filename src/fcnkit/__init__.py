"""fcnkit: Fully Convolutional Networks (Long, Shelhamer & Darrell 2015), made usable.

``create_model`` builds a registered net, ``load`` rebuilds a saved one (a file or a
name from ``list_weights()``), ``train`` trains one from a recipe (as ``fcnkit train``), and
``Predictor`` segments (and detects in) images and video of any size.

The names are loaded on first use (PEP 562), so ``import fcnkit`` -- and the ``fcnkit``
command's ``--help`` -- do not import torch.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "load", "save", "train", "Predictor", "get_weights", "list_weights",
           "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Predictor":
        from .inference import Predictor as value
    elif name in ("create_model", "list_models"):
        from . import models

        value = getattr(models, name)
    elif name == "load":
        from .models.saved import load_model as value
    elif name == "save":
        from .models.saved import save_model as value
    elif name == "train":
        from .engine.run import train_run as value
    elif name in ("get_weights", "list_weights"):
        from .models import zoo

        value = getattr(zoo, name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")  # fcnkit.data etc., as before the laziness
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
