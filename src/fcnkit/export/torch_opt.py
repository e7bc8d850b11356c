"""Optimised torch models on disk: a saved model plus the recipe that reshaped it.

SVD factorisation and BN folding (``fcnkit.models.svd`` / ``fcnkit.models.fold``)
change a model's modules, so its spec alone no longer rebuilds it. The
record stores the recipe under ``meta["optimization"]`` (``{"svd": {"fc6": r, ...},
"fold_bn": true, "precision": "bf16", "compile": true}``);
``fcnkit.models.saved.load_model`` rebuilds the plain model, applies the same
structural changes, then loads the saved weights strictly, and ``open_model`` honours
the precision and compile settings.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..models.saved import atomic_save, model_record


def save_optimized(model: nn.Module, path: str | Path, recipe: dict) -> None:
    """Save ``model`` (already transformed as ``recipe`` says) atomically."""
    atomic_save(model_record(model, **{**model.meta, "optimization": dict(recipe)}), path)


__all__ = ["save_optimized"]
