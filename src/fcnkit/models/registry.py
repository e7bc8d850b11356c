"""One registry of model builders; a builder's function name is the model's name.

``create_model("fcn8s", num_classes=11)`` looks the builder up; ``-`` and ``_`` are
interchangeable so the paper's "fcn8s-atonce" reads naturally on the command line.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def _key(name: str) -> str:
    return name.replace("-", "_").lower()


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    key = _key(fn.__name__)
    if key in _MODELS:
        raise ValueError(f"model {key!r} registered twice")
    _MODELS[key] = fn
    return fn


def list_models() -> list[str]:
    """Registered model names, spelled with '-' as users type them."""
    return sorted(k.replace("_", "-") for k in _MODELS)


def get_builder(name: str) -> Callable[..., nn.Module]:
    try:
        return _MODELS[_key(name)]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from {list_models()}") from None


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model by name; keyword arguments go to its builder."""
    return get_builder(name)(**kwargs)
