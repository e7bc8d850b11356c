"""One registry of model builders; a builder's function name is the model's name.

``create_model("fcn8s", num_classes=11)`` looks the builder up; ``-`` and ``_`` are
interchangeable so the paper's "fcn8s-atonce" reads naturally on the command line.
Each builder is registered with its task (``segmentation``, ``detection`` or
``joint``) and every model it builds carries it as ``model.task``: the one answer to
"what does this model predict?" that the trainer, evaluator and runners ask.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

TASKS = ("segmentation", "detection", "joint")

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_TASKS: dict[str, str] = {}


def _key(name: str) -> str:
    return name.replace("-", "_").lower()


def register_model(fn: Callable[..., nn.Module] | None = None, *, task: str = "segmentation"):
    """``@register_model`` or ``@register_model(task="detection")`` on a builder."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, not {task!r}")

    def add(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = _key(fn.__name__)
        if key in _MODELS:
            raise ValueError(f"model {key!r} registered twice")
        _MODELS[key], _TASKS[key] = fn, task
        return fn

    return add if fn is None else add(fn)


def model_task(name: str) -> str:
    """The task of a registered model name, without building it."""
    get_builder(name)
    return _TASKS[_key(name)]


def list_models(task: str | None = None) -> list[str]:
    """Registered model names, spelled with '-' as users type them; only ``task``'s if given."""
    return sorted(k.replace("_", "-") for k in _MODELS if task is None or _TASKS[k] == task)


def get_builder(name: str) -> Callable[..., nn.Module]:
    try:
        return _MODELS[_key(name)]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from {list_models()}") from None


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model by name; keyword arguments go to its builder. The model
    gets ``.task`` from the registry."""
    model = get_builder(name)(**kwargs)
    model.task = _TASKS[_key(name)]
    return model
