"""One registry of model builders; a builder's function name is the model's name.

``create_model("fcn8s", num_classes=11)`` looks the builder up; ``-`` and ``_`` are
interchangeable so the paper's "fcn8s-atonce" reads naturally on the command line.
Each builder is registered with its heads (``SEG``, ``BOXES`` or both), and every
model it builds carries a ``ModelSpec`` (``model.spec``): the heads, the builder's
keyword arguments as bound here (defaults filled in, never typed by hand), the class
counts and the geometry. It is the one answer to "what is this model?".
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Callable

from torch import nn

from ..heads import SEG, heads_of, task_name
from .encoders import encoder_preprocessing
from .spec import ModelSpec

LOADING_ARGS = ("weights", "encoder_weights")  # how to initialise, not what the network is

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_HEADS: dict[str, frozenset[str]] = {}


def _key(name: str) -> str:
    return name.replace("-", "_").lower()


def register_model(fn: Callable[..., nn.Module] | None = None, *, heads: Iterable[str] = (SEG,)):
    """``@register_model`` (a segmentation model) or ``@register_model(heads=(BOXES,))`` on a builder."""
    heads = heads_of(heads)

    def add(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = _key(fn.__name__)
        if key in _MODELS:
            raise ValueError(f"model {key!r} registered twice")
        _MODELS[key], _HEADS[key] = fn, heads
        return fn

    return add if fn is None else add(fn)


def model_heads(name: str) -> frozenset[str]:
    """The heads of a registered model name, without building it."""
    get_builder(name)
    return _HEADS[_key(name)]


def list_models(task: str | None = None) -> list[str]:
    """Registered model names, spelled with '-' as users type them; only those of ``task``
    ("segmentation", "detection" or "joint") if given."""
    return sorted(k.replace("_", "-") for k in _MODELS if task is None or task_name(_HEADS[k]) == task)


def get_builder(name: str) -> Callable[..., nn.Module]:
    try:
        return _MODELS[_key(name)]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from {list_models()}") from None


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model by name; keyword arguments go to its builder. The model
    gets ``.spec``: its heads, class counts and geometry, and the builder config bound
    from ``kwargs`` and the builder's defaults (minus ``weights``/``encoder_weights``)."""
    builder = get_builder(name)
    model = builder(**kwargs)
    bound = inspect.signature(builder).bind(**kwargs)
    bound.apply_defaults()
    config = {k: v for k, v in bound.arguments.items() if k not in LOADING_ARGS}
    model.spec = ModelSpec(name=_key(name), config=config, heads=_HEADS[_key(name)], pad_multiple=model.pad_multiple,
                           preprocessing=encoder_preprocessing(config["encoder"]))  # what its encoder's weights expect
    model.meta = {}  # what a file adds (palette, metrics, ...): see fcnkit.models.saved
    return model
