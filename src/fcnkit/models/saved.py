"""A saved model is its builder's arguments plus its weights, so it rebuilds by itself.

File layout (``torch.save`` of plain data, loaded with ``weights_only=True``)::

    {"format": "fcnkit-model/1",
     "config": {"name": "fcn8s", "num_classes": 11, "encoder": "vgg16", ...},
     "meta": {"classes": [...], "palette": [[r, g, b], ...], "ignore_index": 255,
              "preprocessing": {...}},
     "model": state_dict}

Training checkpoints (``fcnkit.engine``) hold the same three entries plus the
optimiser state, so ``load_model`` reads both. For distribution a model can also be
written as ``.safetensors`` (``save_model(..., dtype=torch.float16)`` halves it): the
tensors are the state dict and the file's metadata holds ``format``, ``config`` and
``meta`` as JSON, so nothing in it can run code when loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..io import atomic_write, brief, check_output_file
from .fold import fold_batchnorm
from .metadata import MetadataError, check_config, check_meta
from .registry import create_model
from .svd import apply_svd
from .weights import Preprocessing, torch_load
from .zoo import list_weights, resolve

FORMAT = "fcnkit-model/1"
WHAT = "a fcnkit model (.pt checkpoint or .safetensors)"  # what an unreadable file is said not to be


def model_record(model: nn.Module, **meta) -> dict:
    """The rebuildable description of ``model`` (config, meta, weights) as plain data."""
    if not hasattr(model, "config"):
        raise ValueError(f"{type(model).__name__} was not built by create_model; it has no config to save")
    meta = {"preprocessing": model.preprocessing.to_dict(), **meta}
    return {"format": FORMAT, "config": dict(model.config), "meta": meta, "model": model.state_dict()}


def atomic_save(obj: object, path: str | Path) -> None:
    """``torch.save`` through a temp file, fsync and rename, so a crash mid-write never
    leaves a truncated file where a good one was."""
    atomic_write(path, lambda f: torch.save(obj, f))


def save_model(model: nn.Module, path: str | Path, *, dtype: torch.dtype | None = None, **meta) -> None:
    """Save a rebuildable model: a torch record (``.pt``) or ``.safetensors``.

    ``dtype`` (e.g. ``torch.float16``) converts floating-point tensors on the way out;
    ``load_model`` brings them back to the model's own dtype.
    """
    path = check_output_file(path, what="model file")
    record = model_record(model, **meta)
    if dtype is not None:
        record["model"] = {k: v.to(dtype) if v.is_floating_point() else v for k, v in record["model"].items()}
    if path.suffix != ".safetensors":
        atomic_save(record, path)
        return
    from safetensors.torch import save

    header = {key: json.dumps(record[key]) for key in ("config", "meta")}
    data = save({k: v.contiguous() for k, v in record["model"].items()}, metadata={"format": FORMAT, **header})
    atomic_write(path, lambda f: f.write(data))


def save_release(checkpoint: str | Path, out: str | Path, **meta_updates) -> Path:
    """An fp16 safetensors copy of a saved model or training checkpoint (or weights name), with
    everything ``model.meta`` holds (classes, palette, val metrics) and ``meta_updates`` (e.g.
    a detector's recommended ``conf``): how shipped weights are made."""
    check_output_file(out, what="release file")
    model = load_model(checkpoint)
    meta = {k: v for k, v in {**model.meta, **meta_updates}.items() if k != "preprocessing"}  # save_model adds it
    save_model(model, out, dtype=torch.float16, **meta)
    return Path(out)


def read_record(path: str | Path) -> dict:
    """Load a saved model or training checkpoint safely (``weights_only=True``); ``path`` may
    also be the name of registered weights (``fcnkit.list_weights()``)."""
    path = resolve(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file (nor a weights name: {', '.join(list_weights())})")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    rec = torch_load(path, what=WHAT)
    if not isinstance(rec, dict) or rec.get("format") != FORMAT:
        raise ValueError(f"{path}: not {WHAT}: a torch file without fcnkit's {FORMAT!r} record (a plain state "
                         f"dict loads with create_model(..., weights=PATH))")
    return rec


def upgrade_config(config: dict) -> dict:
    """Builder configs written by older fcnkit versions, in today's argument names
    (``fcn8s_det`` called its heatmap classes ``num_classes`` until 2026-12)."""
    config = dict(config)
    if str(config.get("name", "")).replace("-", "_") == "fcn8s_det" and "num_classes" in config:
        config["det_classes"] = config.pop("num_classes")
    return config


def read_config(path: str | Path) -> dict | None:
    """The builder config of a model file without reading its tensors (safetensors header
    or a memory-mapped torch record); ``None`` if the file is not an fcnkit model."""
    try:
        path = resolve(path)
        if path.suffix == ".safetensors":
            header = _safetensors_header(path)
            return upgrade_config(json.loads(header["config"])) if header.get("format") == FORMAT else None
        rec = torch_load(path, what=WHAT, mmap=True)
    except Exception:  # noqa: BLE001 - "not a model file" is the answer; loaders report the details
        return None
    ok = isinstance(rec, dict) and rec.get("format") == FORMAT and isinstance(rec.get("config"), dict)
    return upgrade_config(rec["config"]) if ok else None


def _safetensors_header(path: Path) -> dict[str, str]:
    """The file's string metadata (fcnkit keeps ``format``, ``config`` and ``meta`` there)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.metadata() or {}


def _read_safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    try:
        header = _safetensors_header(path)
        state = load_file(str(path))
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{path}: not {WHAT}: unreadable safetensors ({brief(e)})") from None
    if header.get("format") != FORMAT:
        raise ValueError(f"{path}: not {WHAT}: safetensors without fcnkit metadata (format {FORMAT!r}); "
                         f"plain state dicts load with create_model(..., weights=PATH)")
    parsed = {}
    for key in ("config", "meta"):
        try:
            parsed[key] = json.loads(header[key])
        except KeyError:
            raise MetadataError(f"{path}: model metadata: {key} is missing from the safetensors header") from None
        except json.JSONDecodeError as e:
            raise MetadataError(f"{path}: model metadata: {key} is not valid JSON ({e})") from None
    return {"format": FORMAT, **parsed, "model": state}


def build_structure(config: dict, recipe: dict) -> nn.Module:
    """The module structure an optimisation ``recipe`` gives the model of ``config`` (weights:
    fresh init): BN folded into convolutions, fc6/fc7 factorised by SVD. How an optimised
    record, or an exported file's torch twin (e.g. to count FLOPs), is rebuilt."""
    config = dict(config)
    if "name" not in config:
        raise ValueError("model metadata has no builder config (re-export with fcnkit)")
    model = create_model(config.pop("name"), **config).eval()
    if recipe.get("fold_bn"):
        model, _ = fold_batchnorm(model, inplace=True)
    if recipe.get("svd"):
        apply_svd(model, {k: int(v) for k, v in recipe["svd"].items()}, weights=False)
    return model


def load_model(path: str | Path, *, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model saved by ``save_model``, a training checkpoint or a ``fcnkit optimize
    --backend torch`` result (its recipe, e.g. SVD or BN folding, reshapes the modules
    before the weights load); eval mode.

    ``model.meta`` carries the classes, palette and ignore index saved with it.
    """
    rec = read_record(path)
    source = str(path)
    raw = rec.get("config")
    if not isinstance(raw, dict):
        raise MetadataError(f"{path}: model metadata: config must be a mapping of builder arguments, not "
                            f"{type(raw).__name__}")
    config = check_config(upgrade_config(raw), source)
    meta = dict(check_meta(rec.get("meta", {}), source, num_classes=config.get("num_classes"),
                           det_classes=config.get("det_classes")))
    recipe = meta.get("optimization")
    try:
        model = build_structure(config, recipe) if recipe else create_model(config.pop("name"), **config)
    except (TypeError, ValueError, KeyError) as e:
        raise MetadataError(f"{path}: model metadata: config does not build a model ({brief(e)})") from None
    try:
        model.load_state_dict(rec["model"], strict=True)  # copies into the model's dtype (fp16 files -> fp32)
    except RuntimeError as e:
        raise ValueError(f"{path}: the weights do not fit the model its config describes ({e})") from e
    if "preprocessing" in meta:
        model.preprocessing = Preprocessing.from_dict(meta["preprocessing"])
    model.meta = meta
    return model.to(map_location).eval()
