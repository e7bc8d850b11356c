"""Optimised torch models on disk: a saved model plus the recipe that reshaped it.

SVD factorisation and BN folding change a model's modules, so its builder config
alone no longer rebuilds it. The record stores the recipe under
``meta["optimization"]`` (``{"svd": {"fc6": r, ...}, "fold_bn": true, "precision":
"bf16", "compile": true}``); ``models.saved.load_model`` rebuilds the plain model,
applies the same structural changes, then loads the saved weights strictly.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..models.registry import create_model
from ..models.saved import atomic_save, load_model, model_record
from .fold import fold_batchnorm
from .svd import apply_svd


def save_optimized(model: nn.Module, path: str | Path, recipe: dict) -> None:
    """Save ``model`` (already transformed as ``recipe`` says) atomically."""
    meta = {k: v for k, v in dict(getattr(model, "meta", {}) or {}).items() if k != "preprocessing"}
    meta["optimization"] = dict(recipe)
    atomic_save(model_record(model, **meta), path)


def build_structure(config: dict, recipe: dict) -> nn.Module:
    """The module structure ``recipe`` gives the model of ``config`` (weights: fresh init).

    Also how an exported file's torch twin is rebuilt from its metadata, e.g. to count FLOPs.
    """
    config = dict(config)
    if "name" not in config:
        raise ValueError("model metadata has no builder config (re-export with fcnkit)")
    model = create_model(config.pop("name"), **config).eval()
    if recipe.get("fold_bn"):
        model, _ = fold_batchnorm(model, inplace=True)
    if recipe.get("svd"):
        apply_svd(model, {k: int(v) for k, v in recipe["svd"].items()}, weights=False)
    return model


def load_optimized(path: str | Path) -> tuple[nn.Module, dict]:
    """(model in eval mode, recipe) from a saved model, checkpoint or optimised record."""
    model = load_model(path)
    return model, dict(model.meta.get("optimization", {}))


__all__ = ["save_optimized", "load_optimized", "build_structure"]
