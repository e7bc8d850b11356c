"""A saved model is its builder's arguments plus its weights, so it rebuilds by itself.

File layout (``torch.save`` of plain data, loaded with ``weights_only=True``)::

    {"format": "fcnkit-model/1",
     "config": {"name": "fcn8s", "num_classes": 11, "encoder": "vgg16", ...},
     "meta": {"classes": [...], "palette": [[r, g, b], ...], "ignore_index": 255,
              "preprocessing": {...}},
     "model": state_dict}

Training checkpoints (``fcnkit.engine``) hold the same three entries plus the
optimiser state, so ``load_model`` reads both.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from .registry import create_model
from .weights import Preprocessing

FORMAT = "fcnkit-model/1"


def model_record(model: nn.Module, **meta) -> dict:
    """The rebuildable description of ``model`` (config, meta, weights) as plain data."""
    if not hasattr(model, "config"):
        raise ValueError(f"{type(model).__name__} was not built by create_model; it has no config to save")
    meta = {"preprocessing": model.preprocessing.to_dict(), **meta}
    return {"format": FORMAT, "config": dict(model.config), "meta": meta, "model": model.state_dict()}


def atomic_save(obj: object, path: str | Path) -> None:
    """Write ``obj`` with ``torch.save`` to a temp file, fsync, then rename over ``path``,
    so a crash mid-write never leaves a truncated file where a good one was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(model: nn.Module, path: str | Path, **meta) -> None:
    atomic_save(model_record(model, **meta), path)


def read_record(path: str | Path) -> dict:
    """Load a saved model or training checkpoint safely (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    try:
        rec = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{path}: cannot read model ({type(e).__name__}: {e})") from e
    if not isinstance(rec, dict) or rec.get("format") != FORMAT:
        raise ValueError(f"{path}: not an fcnkit model file (expected format {FORMAT!r})")
    return rec


def load_model(path: str | Path, *, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model saved by ``save_model`` or a training checkpoint; eval mode.

    ``model.meta`` carries the classes, palette and ignore index saved with it.
    """
    rec = read_record(path)
    config = dict(rec["config"])
    model = create_model(config.pop("name"), **config)
    model.load_state_dict(rec["model"], strict=True)
    meta = dict(rec.get("meta", {}))
    if "preprocessing" in meta:
        model.preprocessing = Preprocessing.from_dict(meta["preprocessing"])
    model.meta = meta
    return model.to(map_location).eval()
