"""torchvision MobileNetV3-Large as an FCN encoder, for machines without a GPU.

Taps: features[:4] (stride 4), features[4:7] (8), features[7:13] (16), features[13:] (32). The
attribute ``features`` keeps torchvision's key names, so its ImageNet weights load
once ``classifier.*`` is dropped.
"""

from __future__ import annotations

import torchvision
from torch import Tensor

from .base import Encoder, FeatureInfo, last_norm_channels

# end (exclusive) of each stage in mobilenet_v3_large().features

class MobileNetV3Encoder(Encoder):
    def __init__(self, *, width: float = 1.0) -> None:
        super().__init__()
        self.features = torchvision.models.mobilenet_v3_large(weights=None, width_mult=width).features
        self._bounds = [(0, 4), (4, 7), (7, 13), (13, len(self.features))]
        self.feature_info = [
            FeatureInfo(f"features.{end - 1}", last_norm_channels(self.features[end - 1]), stride)
            for (start, end), stride in zip(self._bounds, (4, 8, 16, 32))
        ]

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for start, end in self._bounds:
            for i in range(start, end):
                x = self.features[i](x)
            outs.append(x)
        return outs

