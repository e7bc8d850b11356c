"""Training configuration: one frozen dataclass, overridden by a recipe file and ``--set``.

A recipe (``configs/*.yaml``) is a flat mapping of field names to values: no
inheritance, no code, unknown keys are errors. ``--set key=value`` then overrides
single fields; the value is parsed as YAML and checked against the field's type,
so ``--set lr=1e-3``, ``--set crop_size=[256,256]`` (or ``256x256``) and
``--set init_from=null`` all do what they say.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from .io import atomic_write_text


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; saved resolved in the run directory."""

    # --- data ---------------------------------------------------------------------
    data: str | tuple[str, ...] | None = None  # FORMAT:PATH or PATH, or a list of them (None: give --data)
    # (trained together: e.g. CamVid masks + raccoon boxes for the joint model; see fcnkit.data.mixed)
    train_split: str = "train"
    val_split: str = "val"
    max_train_samples: int | None = None  # first N samples only (quick runs)
    max_val_samples: int | None = None
    max_size: int | None = None  # resize so the longer side is at most this first (large photos); kept for eval
    crop_size: tuple[int, int] | None = None  # random crop (H, W) after scaling; None = whole image
    scale_range: tuple[float, float] | None = None  # random rescale; None = off (the paper used none)
    hflip: bool = False
    color_jitter: float = 0.0  # brightness/contrast/saturation strength; 0 = off
    mosaic: float = 0.0  # the share of training samples tiled with three others (fcnkit.data.mosaic); needs crop_size
    batch_size: int = 1  # per process; > 1 pads with fcnkit.data.pad_collate
    val_batch_size: int = 1
    workers: int = 2
    # --- model --------------------------------------------------------------------
    model: str = "fcn8s"
    encoder: str = "vgg16"
    encoder_weights: str | None = None  # None, "imagenet" or a torchvision-format file
    geometry: str = "fast"
    width: float = 1.0
    learnable_upsampling: bool = False
    output_stride: int | None = None  # detection / joint maps: 4 or 8; None = the builder's default (4)
    init_from: str | None = None  # checkpoint whose tensors are copied by name (staged training)
    bn_momentum: float | None = None  # override batch-norm momentum (torchvision's MobileNetV3 uses 0.01,
    # too slow for the running stats to follow a net trained from scratch in a few epochs)
    # --- loss ---------------------------------------------------------------------
    loss: str = "ce"  # ce | focal | ohem | lovasz | ce+lovasz
    loss_reduction: str = "mean"  # mean | sum (the reference recipe's unnormalised sum)
    class_weights: str | None = None  # "auto" (median-frequency weights counted on the training data at the
    # start, cached) or a JSON file from `fcnkit data stats`; null: unweighted
    class_weight_power: float = 1.0  # weights ** this: 0.5 = their square root (milder), 0 = unweighted
    focal_gamma: float = 2.0
    ohem_fraction: float = 0.25  # loss "ohem": the share of labelled pixels (the hardest) that count
    det_loss_weight: float = 1.0  # joint models: the box losses x this in the total, so the shared encoder's
    # gradient is not all detection's (trained joint model: box losses' encoder gradient ~15x the masks')
    # --- optimiser and schedule ---------------------------------------------------
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.01
    momentum: float = 0.9  # SGD only
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW only
    weight_decay: float = 5e-4
    encoder_lr_mult: float = 1.0  # encoder parameters: lr x this (fine-tuning a pretrained encoder: < 1)
    bias_lr_mult: float = 1.0  # biases and norm parameters: lr x this (the reference used 2)
    bias_decay: bool = False  # weight decay on biases and norm parameters too
    grad_clip: float | None = None  # max global grad norm
    ema_decay: float | None = None  # keep an exponential moving average of the weights (e.g. 0.999, warmed up
    # as timm's ModelEmaV3 does); validation, best.pt and last.pt's model are then the averaged weights
    epochs: int = 10
    max_iters: int | None = None  # stop after this many iterations in total (overrides epochs)
    schedule: str = "poly"  # fixed | poly | cosine
    poly_power: float = 0.9
    warmup_iters: int = 0
    warmup_factor: float = 0.001  # lr multiplier at iteration 0 of the linear warm-up
    # --- speed and placement ------------------------------------------------------
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "auto"  # auto (measured: bf16 where it is faster here, fcnkit.engine.probe; CUDA: bf16) | bf16 | fp16 | off
    channels_last: bool | None = None  # None / auto: measured, as amp
    compile: bool = False  # torch.compile the model
    threads: int | None = None  # torch intra-op threads; None = torch's default
    seed: int = 0
    # --- run directory, validation, logging ---------------------------------------
    out_dir: str = "runs/train"
    val_every: int = 1  # validate every N epochs (and after the last)
    checkpoint_every: int = 0  # also save last.pt every N iterations; 0 = once per epoch
    progress: bool = True  # a progress bar on a terminal (rank 0); fcnkit train --quiet: False
    log_every: int = 50  # without the bar (not a terminal), a progress line every N iterations (0 = never)

    def __post_init__(self) -> None:
        choices = {"loss": ("ce", "focal", "ohem", "lovasz", "ce+lovasz"), "loss_reduction": ("mean", "sum"),
                   "optimizer": ("sgd", "adamw"), "schedule": ("fixed", "poly", "cosine"),
                   "amp": ("auto", "bf16", "fp16", "off"), "geometry": ("fast", "reference")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {getattr(self, name)!r}")
        for name in ("batch_size", "val_batch_size", "epochs", "val_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        for name in ("workers", "warmup_iters", "checkpoint_every", "log_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, not {getattr(self, name)}")
        for f in fields(self):  # inf and NaN pass every comparison below the wrong way
            values = getattr(self, f.name)
            for v in values if isinstance(values, tuple) else (values,):
                if isinstance(v, float) and not math.isfinite(v):
                    raise ValueError(f"{f.name} must be a finite number, not {values!r}")
        ranges = {"lr": (0, None, False), "encoder_lr_mult": (0, None, True), "bias_lr_mult": (0, None, True),
                  "weight_decay": (0, None, True), "momentum": (0, 1, True), "poly_power": (0, None, False),
                  "warmup_factor": (0, 1, False), "focal_gamma": (0, None, True), "class_weight_power": (0, None, True),
                  "det_loss_weight": (0, None, False), "ohem_fraction": (0, 1, False), "color_jitter": (0, None, True),
                  "width": (0, None, False)}
        for name, (low, high, closed) in ranges.items():
            v = getattr(self, name)
            if (v < low if closed else v <= low) or (high is not None and v > high):
                bounds = f"{'>=' if closed else '>'} {low}" + (f" and <= {high}" if high is not None else "")
                raise ValueError(f"{name} must be {bounds}, not {v}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1) or null, not {self.ema_decay}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0 or null, not {self.grad_clip}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be in [0, 1), not {self.betas}")
        if not 0 <= self.mosaic <= 1:
            raise ValueError(f"mosaic must be a probability in [0, 1], not {self.mosaic}")
        if self.mosaic and self.crop_size is None:
            raise ValueError("mosaic needs crop_size: the mosaic canvas is twice the crop, shrunk to it")
        if self.output_stride not in (None, 4, 8):
            raise ValueError(f"output_stride must be 4, 8 or null, not {self.output_stride}")
        if self.max_size is not None and self.max_size < 1:
            raise ValueError(f"max_size must be >= 1 or null, not {self.max_size}")
        if self.max_iters is not None and self.max_iters < 1:
            raise ValueError(f"max_iters must be >= 1 or null, not {self.max_iters}")
        if self.bn_momentum is not None and not 0 < self.bn_momentum <= 1:
            raise ValueError(f"bn_momentum must be in (0, 1] or null, not {self.bn_momentum}")
        if self.loss_reduction == "sum" and "lovasz" in self.loss:
            raise ValueError("loss_reduction='sum' does not apply to the Lovász loss; use 'mean'")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (tuples become lists) for YAML, JSON and checkpoints."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


_HINTS = typing.get_type_hints(TrainConfig)
FIELDS = {f.name: f for f in fields(TrainConfig)}


# YAML 1.1 (PyYAML) reads an unquoted off/no/false as False (and on/yes/true as True): the
# documented word that a text field's unquoted spelling became
YAML_WORDS = {"amp": {False: "off"}}
AUTO_WORDS = {"channels_last"}  # optional switches whose null is spelled "auto" (measured)
NULL_WORDS = ("none", "null")  # "None" is text to YAML, but means null in an optional text field


def _coerce(name: str, value: Any, source: str) -> Any:
    """Check ``value`` against field ``name``'s type; convert ints to floats, lists to tuples."""
    if isinstance(value, bool) and value in YAML_WORDS.get(name, {}):  # `amp: off`, unquoted
        return YAML_WORDS[name][value]
    if name == "data":  # one spec or a list of specs
        if value is None or (isinstance(value, str) and value.strip().lower() in NULL_WORDS):
            return None
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            return value[0] if len(value) == 1 else tuple(value)
        if isinstance(value, str) and value:
            return value
        raise ValueError(f"{source}: data must be a dataset spec (FORMAT:PATH) or a list of specs, not {value!r}")
    hint = _HINTS[name]
    args = typing.get_args(hint)
    optional = isinstance(hint, types.UnionType) and type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if optional else hint
    if optional and base is str and isinstance(value, str) and value.strip().lower() in NULL_WORDS:
        value = None
    if name in AUTO_WORDS and isinstance(value, str) and value.strip().lower() in ("auto", *NULL_WORDS):
        value = None
    if value is None:
        if optional:
            return None
        raise ValueError(f"{source}: {name} cannot be null")
    origin = typing.get_origin(base)
    if origin is tuple:
        if isinstance(value, str) and "x" in value:  # '360x480'
            value = value.lower().split("x")
        if not isinstance(value, (list, tuple)) or len(value) != len(typing.get_args(base)):
            raise ValueError(f"{source}: {name} must be a list of {len(typing.get_args(base))} numbers, "
                             f"not {value!r}")
        return tuple(_scalar(name, v, t, source) for v, t in zip(value, typing.get_args(base)))
    return _scalar(name, value, base, source)


def _scalar(name: str, value: Any, kind: type, source: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads '1e-3' as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, bool):
            words = "on/yes/true" if value else "off/no/false"
            raise ValueError(f"{source}: {name} must be text, not {value!r} (YAML reads an unquoted {words} as "
                             f"{str(value).lower()}); quote the value")
    raise ValueError(f"{source}: {name} must be {kind.__name__}, not {value!r}")


def _check_key(key: str, source: str) -> None:
    if key not in FIELDS:
        close = difflib.get_close_matches(key, FIELDS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"{source}: unknown config key {key!r}{hint}")


def from_dict(values: dict[str, Any], *, base: TrainConfig | None = None, source: str = "config") -> TrainConfig:
    """``base`` (default: the defaults) with ``values`` replacing fields, type-checked."""
    base = base or TrainConfig()
    changes = {}
    for key, value in values.items():
        _check_key(key, source)
        changes[key] = _coerce(key, value, f"{source}: {key}")
    try:
        return dataclasses.replace(base, **changes)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None


RECIPE_RELATIVE = ("data", "class_weights", "encoder_weights")  # inputs that travel with a recipe
KEYWORD_VALUES = {"class_weights": ("auto",), "encoder_weights": ("imagenet",)}  # words, not relative paths
_SPEC_FORMAT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]+):(.*)$")  # 'camvid:PATH' (not 'C:\\...')


def recipes_dir() -> Path:
    """The shipped recipes (package data; the repo's ``configs/`` links here)."""
    return Path(__file__).parent / "recipes"


def list_recipes() -> list[str]:
    folder = recipes_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def find_recipe(name_or_path: str | Path) -> Path:
    """A recipe file: a path, or the name of a shipped recipe (``camvid_best``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    text = str(name_or_path)
    if "/" not in text and "\\" not in text:
        shipped = recipes_dir() / (text if text.endswith((".yaml", ".yml")) else f"{text}.yaml")
        if shipped.is_file():
            return shipped
    names = list_recipes()
    close = difflib.get_close_matches(path.stem, names, n=3)
    hint = (f"; did you mean {', '.join(close)}?" if close
            else f"; shipped recipes: {', '.join(names)}" if names else "")
    raise FileNotFoundError(f"{path}: no such recipe file or shipped recipe{hint}")


def _beside(folder: Path, path: str) -> str:
    """``path`` as written in a recipe in ``folder`` (absolute), made absolute."""
    if not path:
        return path
    expanded = Path(path).expanduser()
    return str(expanded) if expanded.is_absolute() else os.path.normpath(os.path.join(folder, path))


def _rebase_spec(folder: Path, spec: str) -> str:
    m = _SPEC_FORMAT.match(spec)
    return f"{m.group(1)}:{_beside(folder, m.group(2))}" if m else _beside(folder, spec)


def rebase_recipe_paths(values: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Relative input paths of a recipe (``RECIPE_RELATIVE``) resolve against the recipe's
    folder, so a recipe works from any working folder; ``out_dir`` and ``init_from``
    (which name runs) stay relative to the working folder."""
    values = dict(values)
    data = values.get("data")
    if isinstance(data, str):
        values["data"] = _rebase_spec(folder, data)
    elif isinstance(data, list) and all(isinstance(d, str) for d in data):
        values["data"] = [_rebase_spec(folder, d) for d in data]
    for key in ("class_weights", "encoder_weights"):
        v = values.get(key)
        if isinstance(v, str) and v not in KEYWORD_VALUES[key]:
            values[key] = _beside(folder, v)
    return values


def load_recipe(path: str | Path, *, base: TrainConfig | None = None) -> TrainConfig:
    """Read a flat YAML recipe (a file, or a shipped recipe's name); errors name the file
    and the offending key."""
    path = find_recipe(path)
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from None
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a recipe must be a mapping of config keys to values")
    # the recipe's real folder: configs/ is a link to the shipped recipes
    return from_dict(rebase_recipe_paths(values, path.resolve().parent), base=base, source=str(path))


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["lr=1e-3", "crop_size=[256, 256]"]`` -> ``{"lr": 0.001, "crop_size": [256, 256]}``."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set expects key=value, not {item!r}")
        _check_key(key, "--set")
        try:
            out[key] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            out[key] = text
    return out


def load_config(recipe: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                *, base: TrainConfig | None = None) -> TrainConfig:
    """Defaults (or ``base``) <- recipe file <- ``--set`` overrides."""
    cfg = base or TrainConfig()
    if recipe is not None:
        cfg = load_recipe(recipe, base=cfg)
    return from_dict(parse_overrides(list(overrides)), base=cfg, source="--set")


def absolute_inputs(cfg: TrainConfig) -> dict[str, Any]:
    """``cfg`` as a dict whose input paths (``RECIPE_RELATIVE``) are absolute against the
    working folder: what a saved recipe or checkpoint records, so it names exactly which
    data was used and means the same from any folder."""
    return rebase_recipe_paths(cfg.to_dict(), Path.cwd())


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write ``cfg`` as a recipe, its input paths absolute (``absolute_inputs``)."""
    atomic_write_text(path, yaml.safe_dump(absolute_inputs(cfg), sort_keys=False))


__all__ = ["TrainConfig", "absolute_inputs", "find_recipe", "from_dict", "list_recipes", "load_config", "load_recipe", "parse_overrides",
           "rebase_recipe_paths", "recipes_dir", "save_config"]
