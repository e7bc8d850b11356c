"""Coordinate maps: where a pixel of a feature map sits in the input image.

Caffe's FCN derives every crop offset by composing each layer's affine map
(``x_in = a * x_out + b``); we do the same instead of hard-coding 5/9/31, so a
change of padding or kernel moves the crops with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from torch import nn


@dataclass(frozen=True)
class CoordMap:
    """``x_input = scale * x + offset`` for a map's coordinate ``x`` (same on H and W)."""

    scale: float = 1.0
    offset: float = 0.0

    def then(self, layer: nn.Module) -> "CoordMap":
        """The map of the blob that ``layer`` produces from a blob with this map."""
        if isinstance(layer, nn.ConvTranspose2d):
            k, s, p = layer.kernel_size[0], layer.stride[0], layer.padding[0]
            # inverse of a conv: x_in = (x_out - (k-1)/2 + p) / s
            return CoordMap(self.scale / s, self.offset + self.scale * (p - (k - 1) / 2) / s)
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k, s, p, d = (_pair0(getattr(layer, a, 1)) for a in ("kernel_size", "stride", "padding", "dilation"))
            # x_in = s * x_out + d*(k-1)/2 - p
            return CoordMap(self.scale * s, self.offset + self.scale * (d * (k - 1) / 2 - p))
        return self  # element-wise layers (ReLU, dropout, BN) keep coordinates

    def through(self, layers: Iterable[nn.Module]) -> "CoordMap":
        m = self
        for layer in layers:
            m = m.then(layer)
        return m


def _pair0(v: int | tuple[int, ...]) -> int:
    return v[0] if isinstance(v, tuple) else int(v)


def crop_offset(big: CoordMap, reference: CoordMap) -> int:
    """Offset at which to crop the map ``big`` so it lines up with ``reference``.

    Both maps must have the same scale; the offset is the coordinate in ``big`` of
    ``reference``'s pixel 0 and must be a whole number of pixels.
    """
    if abs(big.scale - reference.scale) > 1e-9:
        raise ValueError(f"cannot align maps of scale {big.scale} and {reference.scale}")
    off = (reference.offset - big.offset) / big.scale
    if abs(off - round(off)) > 1e-9 or off < 0:
        raise ValueError(f"maps are misaligned by {off} pixels; no integer crop aligns them")
    return int(round(off))
