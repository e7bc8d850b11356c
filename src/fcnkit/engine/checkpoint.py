"""Training checkpoints: a saved model record plus everything needed to resume exactly.

A checkpoint is ``fcnkit.models.saved.model_record(model, palette=..., ...)`` (the model's
spec with its class names, the file's meta and the weights, so ``load_model`` and
``fcnkit eval`` read it) extended with the optimiser, scheduler and grad-scaler states,
the progress counters, every rank's RNG states and the training config. Everything is
plain data or tensors: it is written atomically and read back with ``weights_only=True``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models.saved import atomic_save, model_record, read_record
from ..models.weights import load_state_dict_file
from ..models.zoo import resolve


def rng_state() -> dict[str, Any]:
    """This process's python, numpy and torch (CPU and CUDA) RNG states, as plain data."""
    version, mt, gauss = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [version, list(mt), gauss],
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, model: nn.Module, *, meta: dict[str, Any], optimizer=None, scheduler=None,
                    scaler=None, progress: dict[str, Any] | None = None, rng: list[dict] | None = None,
                    train_config: dict[str, Any] | None = None, train_model: nn.Module | None = None) -> None:
    """Write ``path`` atomically; ``optimizer`` etc. are omitted for a weights-only ``best.pt``.

    ``model`` is what eval and predict use; ``train_model`` (the raw weights, when ``model``
    is their moving average) is what a resumed run goes on training."""
    record = model_record(model, **meta)
    if train_model is not None:
        record["train_model"] = train_model.state_dict()
    if optimizer is not None:
        record["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        record["scheduler"] = scheduler.state_dict()
    if scaler is not None:
        record["scaler"] = scaler.state_dict()
    if progress is not None:
        record["progress"] = dict(progress)
    if rng is not None:
        record["rng"] = rng
    if train_config is not None:
        record["train_config"] = train_config
    atomic_save(record, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint safely; error if it lacks the state to resume from."""
    record = read_record(path)
    missing = [k for k in ("optimizer", "progress", "train_config") if k not in record]
    if missing:
        raise ValueError(f"{path}: a saved model, not a resumable training checkpoint (no {', '.join(missing)}); "
                         f"use it with init_from instead")
    return record


def init_from(model: nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Copy every tensor of ``path`` whose name and shape match ``model``'s (staged training:
    FCN-16s from a trained FCN-32s, FCN-8s from a 16s); the rest keep their init.

    Returns ``{"loaded": [...], "skipped": [...] (in file, not used), "new": [...] (not in file)}``.
    """
    source = load_state_dict_file(resolve(path))  # a file, or the name of shipped weights
    own = model.state_dict()
    loaded = [k for k, v in source.items() if k in own and own[k].shape == v.shape]
    if not loaded:
        raise ValueError(f"{path}: no tensor matches the model by name and shape; wrong checkpoint?")
    model.load_state_dict({**own, **{k: source[k] for k in loaded}}, strict=True)
    return {"loaded": loaded, "skipped": sorted(set(source) - set(loaded)), "new": sorted(set(own) - set(loaded))}


__all__ = ["init_from", "load_checkpoint", "rng_state", "save_checkpoint", "set_rng_state"]
