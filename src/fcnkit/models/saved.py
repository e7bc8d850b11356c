"""A saved model is its builder's arguments plus its weights, so it rebuilds by itself.

File layout (``torch.save`` of plain data, loaded with ``weights_only=True``)::

    {"format": "fcnkit-model/2",
     "spec": ModelSpec.to_dict(): name, builder config, heads, class counts and names,
             output stride, pad multiple, preprocessing,
     "meta": {"palette": [[r, g, b], ...], "ignore_index": 255, "val_metrics": {...}, ...},
     "model": state_dict}

Training checkpoints (``fcnkit.engine``) hold the same three entries plus the
optimiser state, so ``load_model`` reads both. For distribution a model can also be
written as ``.safetensors`` (``save_model(..., dtype=torch.float16)`` halves it): the
tensors are the state dict and the file's metadata holds ``format``, ``spec`` and
``meta`` as JSON, so nothing in it can run code when loaded.

Files written before the spec (``fcnkit-model/1``: a builder ``config`` and the class
names, preprocessing and class count inside ``meta``) still load: ``_spec_of_v1`` is the
one conversion path, and re-saving writes the new format.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..io import atomic_write, brief, check_output_file
from .fold import fold_batchnorm
from .metadata import MetadataError, check_config, check_meta, read_spec
from .registry import create_model
from .spec import ModelSpec, spec_of, with_names
from .svd import apply_svd
from .subpixel import subpixel_upsampling
from ..preprocessing import Preprocessing
from .weights import torch_load
from .zoo import list_weights, resolve

FORMAT = "fcnkit-model/2"
FORMAT_V1 = "fcnkit-model/1"  # before the spec; read through _spec_of_v1
WHAT = "a fcnkit model (.pt checkpoint or .safetensors)"  # what an unreadable file is said not to be
SPEC_FIELDS_IN_V1_META = ("classes", "box_classes", "preprocessing", "num_classes", "task")


def model_record(model: nn.Module, *, classes: list[str] | None = None, box_classes: list[str] | None = None,
                 **meta) -> dict:
    """The rebuildable description of ``model`` (spec, meta, weights) as plain data.

    ``classes`` / ``box_classes`` name the classes in the saved spec (``classes`` alone on
    a detector names its box classes: the names of what it labels); ``meta`` is the rest."""
    spec = with_names(spec_of(model), classes, box_classes)
    return {"format": FORMAT, "spec": spec.to_dict(), "meta": meta, "model": model.state_dict()}


def atomic_save(obj: object, path: str | Path) -> None:
    """``torch.save`` through a temp file, fsync and rename, so a crash mid-write never
    leaves a truncated file where a good one was."""
    atomic_write(path, lambda f: torch.save(obj, f))


def save_model(model: nn.Module, path: str | Path, *, dtype: torch.dtype | None = None, **meta) -> None:
    """Save a rebuildable model: a torch record (``.pt``) or ``.safetensors``; ``meta`` as
    for ``model_record`` (``classes=[...]`` names the classes).

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

    header = {key: json.dumps(record[key]) for key in ("spec", "meta")}
    data = save({k: v.contiguous() for k, v in record["model"].items()}, metadata={"format": FORMAT, **header})
    atomic_write(path, lambda f: f.write(data))


def save_release(checkpoint: str | Path, out: str | Path, **meta_updates) -> Path:
    """An fp16 safetensors copy of a saved model or training checkpoint (or weights name), with
    everything ``model.meta`` holds (palette, val metrics) and ``meta_updates`` (e.g. a
    detector's recommended ``conf``): how shipped weights are made."""
    check_output_file(out, what="release file")
    model = load_model(checkpoint)
    save_model(model, out, dtype=torch.float16, **{**model.meta, **meta_updates})
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
    if not isinstance(rec, dict) or rec.get("format") not in (FORMAT, FORMAT_V1):
        raise ValueError(f"{path}: not {WHAT}: a torch file without fcnkit's {FORMAT!r} record (a plain state "
                         f"dict loads with create_model(..., weights=PATH))")
    return rec


def _read_safetensors(path: Path) -> dict:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), "pt") as f:
            header = f.metadata() or {}
        state = load_file(str(path))
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{path}: not {WHAT}: unreadable safetensors ({brief(e)})") from None
    fmt = header.get("format")
    if fmt not in (FORMAT, FORMAT_V1):
        raise ValueError(f"{path}: not {WHAT}: safetensors without fcnkit metadata (format {FORMAT!r}); "
                         f"plain state dicts load with create_model(..., weights=PATH)")
    parsed = {}
    for key in ("spec" if fmt == FORMAT else "config", "meta"):
        try:
            parsed[key] = json.loads(header[key])
        except KeyError:
            raise MetadataError(f"{path}: model metadata: {key} is missing from the safetensors header") from None
        except json.JSONDecodeError as e:
            raise MetadataError(f"{path}: model metadata: {key} is not valid JSON ({e})") from None
    return {"format": fmt, **parsed, "model": state}


def _spec_of_v1(rec: dict, source: str) -> tuple[ModelSpec, dict]:
    """(spec, meta) of a ``fcnkit-model/1`` record: its builder ``config`` (where ``fcn8s_det``
    still called its heatmap classes ``num_classes``) and the spec's facts kept in ``meta``."""
    raw = rec.get("config")
    if not isinstance(raw, dict):
        raise MetadataError(f"{source}: model metadata: config must be a mapping of builder arguments, not "
                            f"{type(raw).__name__}")
    config = dict(raw)
    if str(config.get("name", "")).replace("-", "_") == "fcn8s_det" and "num_classes" in config:
        config["det_classes"] = config.pop("num_classes")
    config = check_config(config, source)
    meta = dict(check_meta(rec.get("meta", {}), source, num_classes=config.get("num_classes"),
                           det_classes=config.get("det_classes")))
    try:
        with torch.device("meta"):  # the spec only: no weights allocated, no init run
            spec = _build(config).spec
    except (TypeError, ValueError, KeyError) as e:
        raise MetadataError(f"{source}: model metadata: config does not build a model ({brief(e)})") from None
    spec = with_names(spec, meta.get("classes"), meta.get("box_classes"))
    if "preprocessing" in meta:
        spec = spec.replace(preprocessing=Preprocessing.from_dict(meta["preprocessing"]))
    return spec, {k: v for k, v in meta.items() if k not in SPEC_FIELDS_IN_V1_META}


def _build(config: dict) -> nn.Module:
    config = dict(config)
    return create_model(config.pop("name"), **config)


def build_structure(spec: ModelSpec, recipe: dict) -> nn.Module:
    """The module structure an optimisation ``recipe`` gives the model of ``spec`` (weights:
    fresh init): BN folded into convolutions, fc6/fc7 factorised by SVD, sub-pixel upsampling. How an optimised
    record, or an exported file's torch twin (e.g. to count FLOPs), is rebuilt."""
    model = _build(spec.builder_config).eval()
    built = model.spec.replace(classes=spec.classes, box_classes=spec.box_classes, preprocessing=spec.preprocessing)
    if built != spec:
        raise ValueError(f"the builder makes {built}, not the spec's {spec}")
    if recipe.get("fold_bn"):
        model, _ = fold_batchnorm(model, inplace=True)
    if recipe.get("svd"):
        apply_svd(model, {k: int(v) for k, v in recipe["svd"].items()}, weights=False)
    if recipe.get("subpixel"):
        subpixel_upsampling(model)
    model.spec = spec
    return model


def read_model_spec(rec: dict, source: str) -> tuple[ModelSpec, dict]:
    """(spec, meta) of a record read by ``read_record``, checked; old records converted."""
    if rec.get("format") == FORMAT_V1:
        return _spec_of_v1(rec, source)
    spec = read_spec(rec.get("spec"), source)
    meta = dict(check_meta(rec.get("meta", {}), source))
    return spec, meta


def load_model(path: str | Path, *, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model saved by ``save_model``, a training checkpoint or a ``fcnkit optimize
    --backend torch`` result (its recipe, e.g. SVD or BN folding, reshapes the modules
    before the weights load); eval mode.

    ``model.spec`` is the file's (class names, preprocessing included); ``model.meta``
    carries the rest of what was saved with it (palette, ignore index, metrics).
    """
    rec = read_record(path)
    source = str(path)
    spec, meta = read_model_spec(rec, source)
    try:
        model = build_structure(spec, meta.get("optimization") or {})
    except (TypeError, ValueError, KeyError) as e:
        raise MetadataError(f"{path}: model metadata: the spec does not build a model ({brief(e)})") from None
    try:
        model.load_state_dict(rec["model"], strict=True)  # copies into the model's dtype (fp16 files -> fp32)
    except RuntimeError as e:
        raise ValueError(f"{path}: the weights do not fit the model its spec describes ({e})") from e
    model.meta = meta
    return model.to(map_location).eval()
