"""What input a network expects: channel order, scale, mean and std, as typed data.

A network is only as good as the preprocessing it was trained with: torchvision's
ImageNet weights want RGB in [0, 1] normalised by mean/std, the authors' Caffe VGG
wants BGR in 0..255 minus a mean, TensorFlow's EfficientNet-Lite [-1, 1]. Models and
weights declare which; the data transforms, runners and exports read it. It sits at
the bottom of the package (it imports only torch) because data and models both need it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Preprocessing:
    """``x = (image[channels] * scale - mean) / std`` for an image in [0, 1], RGB."""

    channel_order: str = "RGB"  # "RGB" or "BGR"
    scale: float = 1.0  # 1.0 for [0,1] inputs, 255.0 for 0..255 inputs
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __call__(self, image: Tensor) -> Tensor:
        """Normalise a float RGB image batch or image in [0, 1] (channels at dim -3)."""
        if self.channel_order == "BGR":
            image = image.flip(-3)
        mean = torch.tensor(self.mean, dtype=image.dtype, device=image.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=image.dtype, device=image.device).view(3, 1, 1)
        return (image * self.scale - mean) / std

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        return cls(d["channel_order"], float(d["scale"]), tuple(d["mean"]), tuple(d["std"]))


IMAGENET = Preprocessing()
"""torchvision ImageNet weights: RGB, [0, 1], ImageNet mean/std."""

TF_INCEPTION = Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
"""TensorFlow-trained nets (EfficientNet-Lite): RGB scaled to [-1, 1]."""

CAFFE_VGG = Preprocessing("BGR", 255.0, (104.00698793, 116.66876762, 122.67891434), (1.0, 1.0, 1.0))
"""The authors' Caffe VGG-16 / FCN weights: BGR, 0..255, mean subtracted, no std."""


__all__ = ["CAFFE_VGG", "IMAGENET", "TF_INCEPTION", "Preprocessing"]
