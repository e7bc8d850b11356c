"""A model's contract as one frozen value: what it predicts, for how many classes, on what input.

Every model ``create_model`` builds carries a ``ModelSpec`` as ``model.spec``; saved
files, exported graphs' metadata and runners carry the same value as JSON
(``to_dict``; ``fcnkit.models.metadata.read_spec`` reads and checks it). The builder config in it is captured by the registry
from the builder's own keyword arguments, never typed by hand, so the spec always
rebuilds the model it came from. Trainer, evaluator, predictor, optimize and serve
ask it (``SEG in spec.heads``, ``spec.num_classes``) instead of inspecting a module.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from torch import nn

from ..heads import BOXES, SEG, heads_of, output_names, task_name
from ..preprocessing import IMAGENET, Preprocessing

SPEC_FORMAT = "fcnkit-spec/1"


def _frozen(config: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(json.loads(json.dumps(dict(config))))  # plain JSON data, read-only


@dataclass(frozen=True)
class ModelSpec:
    """``name``: the registered builder; ``config``: its other keyword arguments;
    ``heads``: ``{SEG}``, ``{BOXES}`` or both; ``pad_multiple``: the input size multiple
    the network pads to internally; ``classes`` / ``box_classes``: names, once the model
    has been trained on named data. The class counts and the box maps' stride are the
    builder's arguments, read from ``config`` (never stored twice)."""

    name: str
    config: Mapping[str, Any] = field(compare=True, hash=False)
    heads: frozenset[str]
    pad_multiple: int = 1
    preprocessing: Preprocessing = IMAGENET
    classes: tuple[str, ...] = ()
    box_classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "config", _frozen(self.config))
        object.__setattr__(self, "heads", heads_of(self.heads))
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "box_classes", tuple(self.box_classes))

    @property
    def num_classes(self) -> int | None:
        """Scores per pixel (the SEG head), or None."""
        return self.config["num_classes"] if SEG in self.heads else None

    @property
    def det_classes(self) -> int | None:
        """Heatmap channels (the BOXES head), or None."""
        return self.config["det_classes"] if BOXES in self.heads else None

    @property
    def output_stride(self) -> int:
        """The stride of the box maps (1 without a BOXES head)."""
        return self.config["output_stride"] if BOXES in self.heads else 1

    @property
    def task(self) -> str:
        """The task's name for people: "segmentation", "detection" or "joint"."""
        return task_name(self.heads)

    @property
    def outputs(self) -> tuple[str, ...]:
        """The keys of ``forward``'s dict (and the exported graph's output names), in order."""
        return output_names(self.heads)

    @property
    def builder_config(self) -> dict[str, Any]:
        """``create_model(**spec.builder_config)`` rebuilds the network (fresh weights)."""
        return {"name": self.name, **self.config}

    @property
    def label_names(self) -> tuple[str, ...]:
        """The names of what the model labels: pixel classes if it segments, else box classes."""
        return self.classes if SEG in self.heads else self.box_classes

    def __reduce__(self) -> tuple:
        """Pickles (DDP, data-loader workers) and deep copies (EMA) with the config as a plain dict."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return _rebuild, ({**values, "config": dict(self.config)},)

    def __deepcopy__(self, memo: dict) -> "ModelSpec":
        return self  # frozen all the way down: a copy would be the same value

    def replace(self, **changes: Any) -> "ModelSpec":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data; ``metadata.read_spec`` reads it back."""
        return {"format": SPEC_FORMAT, "name": self.name, "config": dict(self.config), "heads": sorted(self.heads),
                "num_classes": self.num_classes, "det_classes": self.det_classes,
                "output_stride": self.output_stride, "pad_multiple": self.pad_multiple,
                "preprocessing": self.preprocessing.to_dict(), "classes": list(self.classes),
                "box_classes": list(self.box_classes)}


def _rebuild(values: dict[str, Any]) -> ModelSpec:
    return ModelSpec(**values)


def spec_of(model: Any) -> ModelSpec:
    """The spec a model or runner carries (through DDP's ``module`` and ``torch.compile``'s
    ``_orig_mod`` wrappers); a clear error for modules ``create_model`` did not build."""
    while isinstance(model, nn.Module) and "spec" not in model.__dict__:
        inner = model._modules.get("module") or model._modules.get("_orig_mod")
        if inner is None:
            break
        model = inner
    spec = vars(model).get("spec") if hasattr(model, "__dict__") else None
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"{type(model).__name__} has no ModelSpec (build it with fcnkit.create_model, or give "
                        f"it one: model.spec = ModelSpec(...))")
    return spec


def with_names(spec: ModelSpec, classes: list[str] | tuple[str, ...] | None,
               box_classes: list[str] | tuple[str, ...] | None = None) -> ModelSpec:
    """``spec`` naming its classes; the counts must agree (a ValueError says which list does not).
    ``classes`` on a model without a SEG head name its box classes: the names of what it
    labels (``spec.label_names``; old detector files wrote both lists, the same)."""
    if SEG not in spec.heads:
        if classes and box_classes and tuple(classes) != tuple(box_classes):
            raise ValueError(f"classes {list(classes)} and box classes {list(box_classes)} differ on a model "
                             f"that only predicts boxes")
        classes, box_classes = None, box_classes or classes
    changes = {}
    for key, names, count in (("classes", classes, spec.num_classes), ("box_classes", box_classes, spec.det_classes)):
        if names:
            if count is None or len(names) != count:
                raise ValueError(f"{len(names)} {key.replace('_', ' ')} named for a model that scores {count}")
            changes[key] = tuple(names)
    return spec.replace(**changes)


__all__ = ["ModelSpec", "SPEC_FORMAT", "spec_of", "with_names"]
