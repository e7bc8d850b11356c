"""torchvision ResNets as FCN encoders: taps layer1 (stride 4), layer2 (8), layer3 (16), layer4 (32).

Attribute names equal torchvision's, so its ImageNet state dict loads once ``fc.*``
(the classifier an FCN replaces) is dropped.
"""

from __future__ import annotations

import torchvision
from torch import Tensor

from .base import Encoder, FeatureInfo, last_norm_channels


class ResNetEncoder(Encoder):
    def __init__(self, arch: str) -> None:
        super().__init__()
        net = getattr(torchvision.models, arch)(weights=None)
        self.arch = arch
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.feature_info = [
            FeatureInfo(name, last_norm_channels(getattr(self, name)), stride)
            for name, stride in (("layer1", 4), ("layer2", 8), ("layer3", 16), ("layer4", 32))
        ]

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # stride 4
        c1 = self.layer1(x)  # stride 4
        c2 = self.layer2(c1)  # stride 8
        c3 = self.layer3(c2)  # stride 16
        c4 = self.layer4(c3)  # stride 32
        return [c1, c2, c3, c4]
