"""What every encoder promises the decoders: feature taps declared as data."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..geometry import CoordMap


@dataclass(frozen=True)
class FeatureInfo:
    """One tap: its name, channel count and output stride (input pixels per map pixel).

    ``coord`` is the tap's coordinate map when the encoder knows it exactly (the
    reference VGG geometry needs it to derive crop offsets); ``None`` means the tap
    is aligned to the padded input grid and needs no crop.
    """

    name: str
    channels: int
    stride: int
    coord: CoordMap | None = None


class Encoder(nn.Module):
    """Base class: ``forward(x)`` returns one tensor per entry of ``feature_info``,
    ordered fine to coarse (stride 4, 8, 16, 32: the paper's pool2..pool5 and fc7; FCN-8s
    uses the last three, "FCN-4s" all four)."""

    feature_info: list[FeatureInfo]

    def forward(self, x: Tensor) -> list[Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def output_stride(self) -> int:
        return self.feature_info[-1].stride


def last_norm_channels(block: nn.Module) -> int:
    """Channels a block emits: those of its last BatchNorm (true for torchvision's nets)."""
    bns = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
    return bns[-1].num_features
