"""Train and eval presets on ``torchvision.transforms.v2``: image, mask and boxes move together.

v2 dispatches on the ``tv_tensors`` type, so masks are resized with nearest
interpolation, crops pad masks with the ignore index and boxes are transformed
in image coordinates, then clipped; boxes that become degenerate are dropped with
their labels. The last step turns the uint8 image into float [0, 1] and applies the
model's ``Preprocessing`` (RGB mean/std, or BGR 0..255 for Caffe weights), so the
model's weights metadata decides normalisation rather than the data pipeline.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils._pytree import tree_flatten
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ..preprocessing import Preprocessing
from .base import IGNORE_INDEX


class RandomScale(v2.Transform):
    """Resize by one random factor in ``scale_range`` (aspect kept); masks use nearest."""

    def __init__(self, scale_range: tuple[float, float]) -> None:
        super().__init__()
        lo, hi = scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
        self.scale_range = (float(lo), float(hi))

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.query_size(flat_inputs)
        s = float(torch.empty(()).uniform_(*self.scale_range))
        return {"size": [max(1, round(h * s)), max(1, round(w * s))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.resize, inpt, size=params["size"], antialias=True)


class SanitizeBoxes(v2.SanitizeBoundingBoxes):
    """``SanitizeBoundingBoxes`` that lets mask-only samples through untouched."""

    def forward(self, *inputs: Any) -> Any:
        flat, _ = tree_flatten(inputs if len(inputs) > 1 else inputs[0])
        if not any(isinstance(x, tv_tensors.BoundingBoxes) for x in flat):
            return inputs if len(inputs) > 1 else inputs[0]
        return super().forward(*inputs)


class Preprocess(v2.Transform):
    """Apply a model's ``Preprocessing`` to the (float, [0, 1], RGB) image only."""

    _transformed_types = (tv_tensors.Image,)

    def __init__(self, preprocessing: Preprocessing) -> None:
        super().__init__()
        self.preprocessing = preprocessing

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return tv_tensors.wrap(self.preprocessing(inpt.as_subclass(Tensor)), like=inpt)


def _to_model_input(preprocessing: Preprocessing) -> list[v2.Transform]:
    return [
        v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}, scale=True),
        Preprocess(preprocessing),
    ]


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def train_transforms(preprocessing: Preprocessing, *, crop_size: int | tuple[int, int] | None = None,
                     scale_range: tuple[float, float] | None = (0.5, 2.0), hflip: bool = True,
                     color_jitter: tuple[float, float, float, float] | None = (0.3, 0.3, 0.3, 0.0),
                     ignore_index: int = IGNORE_INDEX) -> v2.Compose:
    """Random scale -> random crop (H, W) padded with 0 / ``ignore_index`` -> h-flip ->
    colour jitter (brightness, contrast, saturation, hue) -> clip/drop boxes -> float +
    ``preprocessing``. ``None`` disables a step (the paper trained with none of them)."""
    steps: list[v2.Transform] = []
    if scale_range is not None:
        steps.append(RandomScale(scale_range))
    if crop_size is not None:
        steps.append(v2.RandomCrop(_pair(crop_size), pad_if_needed=True,
                                   fill={tv_tensors.Image: 0, tv_tensors.Mask: ignore_index, "others": 0}))
    if hflip:
        steps.append(v2.RandomHorizontalFlip(0.5))
    if color_jitter is not None:
        steps.append(v2.ColorJitter(*color_jitter))
    steps += [v2.ClampBoundingBoxes(), SanitizeBoxes()]
    return v2.Compose(steps + _to_model_input(preprocessing))


def eval_transforms(preprocessing: Preprocessing) -> v2.Compose:
    """No geometry change (FCNs take any size): just float + ``preprocessing``."""
    return v2.Compose(_to_model_input(preprocessing))

