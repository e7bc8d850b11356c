"""Encoders: the classification nets an FCN is cut from, each declaring its taps.

``create_encoder(name, weights=...)`` builds one and loads ImageNet weights from
torchvision's weights API (``"imagenet"``), a local torchvision-format file, or the
encoder part of a model trained with fcnkit (to start one task from another).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch import Tensor

from ..weights import IMAGENET, Preprocessing, check_and_load, load_state_dict_file
from .base import Encoder, FeatureInfo
from .mobilenet import MobileNetV3Encoder
from .resnet import ResNetEncoder
from .vgg import VGG16Encoder, vgg16_from_torchvision


@dataclass(frozen=True)
class EncoderSpec:
    """How to build an encoder and how to read torchvision's weights into it."""

    build: Callable[..., Encoder]
    torchvision_weights: str  # the enum member in torchvision.models, e.g. "VGG16_Weights.IMAGENET1K_V1"
    convert: Callable[[dict[str, Tensor]], dict[str, Tensor]]
    preprocessing: Preprocessing = IMAGENET


def _drop(prefix: str) -> Callable[[dict[str, Tensor]], dict[str, Tensor]]:
    return lambda sd: {k: v for k, v in sd.items() if not k.startswith(prefix)}


ENCODERS: dict[str, EncoderSpec] = {
    "vgg16": EncoderSpec(lambda geometry, width: VGG16Encoder(geometry=geometry, width=width),
                         "VGG16_Weights.IMAGENET1K_V1", vgg16_from_torchvision),
    "resnet18": EncoderSpec(lambda geometry, width: ResNetEncoder("resnet18"),
                            "ResNet18_Weights.IMAGENET1K_V1", _drop("fc.")),
    "resnet34": EncoderSpec(lambda geometry, width: ResNetEncoder("resnet34"),
                            "ResNet34_Weights.IMAGENET1K_V1", _drop("fc.")),
    "resnet50": EncoderSpec(lambda geometry, width: ResNetEncoder("resnet50"),
                            "ResNet50_Weights.IMAGENET1K_V2", _drop("fc.")),
    "mobilenet_v3_large": EncoderSpec(lambda geometry, width: MobileNetV3Encoder(width=width),
                                      "MobileNet_V3_Large_Weights.IMAGENET1K_V1", _drop("classifier.")),
}


def list_encoders() -> list[str]:
    return sorted(ENCODERS)


def create_encoder(name: str, *, weights: str | Path | None = None, geometry: str = "fast",
                   width: float = 1.0) -> Encoder:
    """Build encoder ``name``; ``weights`` is None, ``"imagenet"`` or a state-dict path
    (torchvision's format, or any fcnkit model file with this encoder: its encoder part).

    Only VGG-16 has a ``"reference"`` geometry (pad 100 exists to rescue its 7x7 fc6);
    ``width`` scales channels for VGG-16 and MobileNetV3 (ResNets ignore it only at 1.0).
    """
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose from {list_encoders()}")
    if geometry == "reference" and name != "vgg16":
        raise ValueError(f"geometry='reference' is the authors' VGG-16 geometry; use 'fast' with {name}")
    if name.startswith("resnet") and width != 1.0:
        raise ValueError(f"{name} has no width option; use vgg16 or mobilenet_v3_large for narrow nets")
    spec = ENCODERS[name]
    encoder = spec.build(geometry=geometry, width=width)
    if weights is not None:
        if width != 1.0:
            raise ValueError(f"pretrained weights need width=1.0, got width={width}")
        state, source = _fetch(spec, weights)
        trained = _encoder_part(state, encoder.state_dict().keys())
        check_and_load(encoder, trained if trained is not None else spec.convert(state), source=source)
    return encoder


def _encoder_part(state: dict[str, Tensor], own: Iterable[str]) -> dict[str, Tensor] | None:
    """The encoder's tensors from a state dict that already uses fcnkit's names: an encoder,
    a segmentation model (its encoder keys are unprefixed) or a detection/joint model
    (``encoder.`` prefix). ``None`` when the names are foreign (e.g. torchvision's VGG-16).

    So a model trained with fcnkit (say on CamVid) can start another from its encoder.
    """
    own = set(own)
    for prefix in ("", "encoder."):
        part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and k[len(prefix):] in own}
        if part.keys() == own:
            return part
    return None


def _fetch(spec: EncoderSpec, weights: str | Path) -> tuple[dict[str, Tensor], str]:
    if str(weights) == "imagenet":
        import torchvision

        enum_name, member = spec.torchvision_weights.split(".")
        w = getattr(getattr(torchvision.models, enum_name), member)
        try:
            return w.get_state_dict(progress=True), f"torchvision {spec.torchvision_weights}"
        except Exception as e:  # noqa: BLE001 - no network is the common case; say what to do
            raise RuntimeError(
                f"could not download torchvision {spec.torchvision_weights} ({type(e).__name__}: {e}). "
                f"Without internet, download {w.url} elsewhere and pass its path: "
                f"encoder_weights='/path/to/{Path(w.url).name}'") from e
    return load_state_dict_file(weights), str(weights)


__all__ = ["ENCODERS", "Encoder", "EncoderSpec", "FeatureInfo", "create_encoder", "list_encoders"]
