"""Weights as typed data: where they come from and what input they expect.

A network is only as good as the preprocessing it was trained with: torchvision's
ImageNet weights want RGB in [0, 1] normalised by mean/std, the authors' Caffe VGG
wants BGR in 0..255 minus a mean. Each source declares which, and the data
transforms read it from here instead of guessing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

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


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Load a state dict safely: safetensors, or a torch pickle with ``weights_only=True``.

    A checkpoint dict with a ``"model"`` or ``"state_dict"`` entry is unwrapped.
    Errors name the file and what is wrong with it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        raise ValueError(f"{path}: cannot read weights ({type(e).__name__}: {e})") from e
    if isinstance(sd, dict):
        for key in ("model", "state_dict"):
            if key in sd and isinstance(sd[key], dict):
                sd = sd[key]
                break
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise ValueError(f"{path}: not a state dict (a mapping of names to tensors)")
    return sd


def check_and_load(module: torch.nn.Module, state_dict: dict[str, Tensor], *, source: str,
                   ignore_missing: tuple[str, ...] = ()) -> None:
    """``load_state_dict(strict=True)`` with an error that lists offending keys and shapes.

    ``ignore_missing`` names key prefixes that may be absent (e.g. the decoder when only
    encoder weights are loaded).
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict and not k.startswith(ignore_missing)]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in state_dict if k in own and state_dict[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
    if mismatched:
        problems.append("shape mismatches " + "; ".join(mismatched[:8]))
    if problems:
        raise ValueError(f"{source}: weights do not fit {type(module).__name__}: " + "; ".join(problems))
    module.load_state_dict(state_dict, strict=False)
