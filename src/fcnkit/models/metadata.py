"""A model file's metadata, checked when it is opened: types, ranges and agreement with itself.

A ``.pt`` / ``.safetensors`` model, an ONNX file and an OpenVINO sidecar all carry a
builder ``config`` and a ``meta`` mapping (classes, palette, preprocessing, ...). Read
from a file, they are untrusted input: a missing config, a class count of "eleven" or
10^9, a std of 0, three class names for eleven classes must be refused with one line
naming the file and the field, not a traceback, an allocation of terabytes or a model
that serves nonsense.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

from ..heads import BOXES, HEADS, SEG, heads_of
from ..preprocessing import Preprocessing
from .registry import get_builder, model_heads
from .spec import SPEC_FORMAT, ModelSpec

MAX_CLASSES = 65_536
CLASS_COUNTS = ("num_classes", "det_classes")


class MetadataError(ValueError):
    """A model file's metadata is malformed; the message names the file and the field."""


def _fail(source: str, field: str, problem: str) -> MetadataError:
    return MetadataError(f"{source}: model metadata: {field} {problem}")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_config(config: Any, source: str) -> dict:
    """The builder config as a dict: a registered model ``name`` and only arguments its
    builder takes, class counts whole numbers in [1, MAX_CLASSES]."""
    if not isinstance(config, dict):
        raise _fail(source, "config", f"must be a mapping of builder arguments, not {type(config).__name__}")
    name = config.get("name")
    if not isinstance(name, str):
        raise _fail(source, "config.name", "is missing (not an fcnkit model file, or written by a foreign tool)")
    try:
        builder = get_builder(name)
    except ValueError as e:
        raise _fail(source, "config.name", str(e)) from None
    params = inspect.signature(builder).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key, value in config.items():
        if key == "name":
            continue
        if key not in params and not takes_any:
            raise _fail(source, f"config.{key}", f"is not an argument of {name}")
        if key in CLASS_COUNTS and not (isinstance(value, int) and not isinstance(value, bool)
                                        and 1 <= value <= MAX_CLASSES):
            raise _fail(source, f"config.{key}", f"must be a whole number in [1, {MAX_CLASSES}], not {value!r}")
        if key == "width" and not (_finite(value) and 0 < value <= 16):
            raise _fail(source, "config.width", f"must be a number in (0, 16], not {value!r}")
        if key in ("encoder", "geometry") and not isinstance(value, str):
            raise _fail(source, f"config.{key}", f"must be text, not {value!r}")
    return config


def check_preprocessing(prep: Any, source: str, field: str = "meta.preprocessing") -> None:
    if not isinstance(prep, dict):
        raise _fail(source, field, f"must be a mapping, not {type(prep).__name__}")
    if prep.get("channel_order") not in ("RGB", "BGR"):
        raise _fail(source, f"{field}.channel_order", f"must be RGB or BGR, not {prep.get('channel_order')!r}")
    if not (_finite(prep.get("scale")) and prep["scale"] > 0):
        raise _fail(source, f"{field}.scale", f"must be a positive number, not {prep.get('scale')!r}")
    for key in ("mean", "std"):
        v = prep.get(key)
        if not (isinstance(v, (list, tuple)) and len(v) == 3 and all(_finite(x) for x in v)):
            raise _fail(source, f"{field}.{key}", f"must be 3 finite numbers, not {v!r}")
        if key == "std" and any(x <= 0 for x in v):
            raise _fail(source, f"{field}.std", f"must be positive (it divides), not {v!r}")


def check_meta(meta: Any, source: str, *, num_classes: int | None = None,
               det_classes: int | None = None) -> dict:
    """The ``meta`` mapping, checked field by field; ``classes`` must name every class the
    weights score (``num_classes``; a detector's are its ``det_classes``)."""
    if not isinstance(meta, dict):
        raise _fail(source, "meta", f"must be a mapping, not {type(meta).__name__}")
    if "num_classes" in meta and meta["num_classes"] is not None and not (
            isinstance(meta["num_classes"], int) and 1 <= meta["num_classes"] <= MAX_CLASSES):
        raise _fail(source, "meta.num_classes", f"must be a whole number in [1, {MAX_CLASSES}], "
                                                f"not {meta['num_classes']!r}")
    for key in ("classes", "box_classes"):
        names = meta.get(key)
        if names is None:
            continue
        if not (isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names)):
            raise _fail(source, f"meta.{key}", "must be a list of class names")
    expected = num_classes if num_classes is not None else det_classes
    names = meta.get("classes")
    if names and expected is not None and len(names) != expected:
        raise _fail(source, "meta.classes", f"names {len(names)} classes but the model scores {expected}")
    boxes = meta.get("box_classes")
    if boxes and det_classes is not None and num_classes is not None and len(boxes) != det_classes:
        raise _fail(source, "meta.box_classes", f"names {len(boxes)} classes but the box head scores {det_classes}")
    palette = meta.get("palette")
    if palette is not None and not (isinstance(palette, (list, tuple)) and all(
            isinstance(c, (list, tuple)) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
            for c in palette)):
        raise _fail(source, "meta.palette", "must be a list of [r, g, b] triples of 0..255")
    if "preprocessing" in meta:
        check_preprocessing(meta["preprocessing"], source)
    if "conf" in meta and not (_finite(meta["conf"]) and 0 <= meta["conf"] <= 1):
        raise _fail(source, "meta.conf", f"must be a score in [0, 1], not {meta['conf']!r}")
    if "max_size" in meta and not (isinstance(meta["max_size"], int) and meta["max_size"] >= 1):
        raise _fail(source, "meta.max_size", f"must be a whole number >= 1, not {meta['max_size']!r}")
    return meta


def read_spec(data: Any, source: str) -> ModelSpec:
    """A spec read from a file, checked field by field: a clear ``MetadataError`` naming
    ``source`` and the field instead of a model that serves nonsense."""
    def fail(key: str, problem: str) -> MetadataError:
        return MetadataError(f"{source}: model spec: {key} {problem}")

    if not isinstance(data, Mapping):
        raise MetadataError(f"{source}: model spec: must be a mapping, not {type(data).__name__} (a file written "
                            f"without one is not an fcnkit model)")
    if data.get("format") != SPEC_FORMAT:
        raise fail("format", f"is {data.get('format')!r}, not {SPEC_FORMAT!r} (written by a newer fcnkit?)")
    config = data.get("config")
    check_config({"name": data.get("name"), **(config if isinstance(config, Mapping) else {})}, source)
    try:
        heads = heads_of(data.get("heads") or ())
    except (TypeError, ValueError):
        raise fail("heads", f"must be a non-empty list of {list(HEADS)}, not {data.get('heads')!r}") from None
    if heads != model_heads(data["name"]):
        raise fail("heads", f"are {sorted(heads)} but {data['name']} has {sorted(model_heads(data['name']))}")
    for key, head in (("num_classes", SEG), ("det_classes", BOXES)):
        v = data.get(key)
        if head in heads and not (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_CLASSES):
            raise fail(key, f"must be a whole number in [1, {MAX_CLASSES}] for a {head} head, not {v!r}")
    for key in ("output_stride", "pad_multiple"):
        v = data.get(key)
        if not (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1024):
            raise fail(key, f"must be a whole number in [1, 1024], not {v!r}")
    check_preprocessing(data.get("preprocessing"), source, field="spec.preprocessing")
    spec = ModelSpec(name=str(data["name"]), config=dict(config or {}), heads=heads,
                     pad_multiple=data["pad_multiple"], preprocessing=Preprocessing.from_dict(data["preprocessing"]))
    derived = {"num_classes": spec.num_classes, "det_classes": spec.det_classes, "output_stride": spec.output_stride}
    for key, value in derived.items():  # stored for other readers of the file; the config decides
        if data[key] != value:
            raise fail(key, f"is {data[key]!r} but the config says {value!r}")
    names = {}
    for key, count in (("classes", spec.num_classes), ("box_classes", spec.det_classes)):
        v = data.get(key) or []
        if not (isinstance(v, list) and all(isinstance(n, str) for n in v)):
            raise fail(key, "must be a list of class names")
        if v and len(v) != count:
            raise fail(key, f"names {len(v)} classes but the model scores {count}")
        names[key] = tuple(v)
    return spec.replace(**names)

__all__ = ["MAX_CLASSES", "MetadataError", "check_config", "check_meta", "check_preprocessing", "read_spec"]
