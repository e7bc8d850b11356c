"""Fully convolutional detection ("objects as points") and joint segmentation + detection.

Detection here is dense prediction like segmentation (Zhou et al. 2019, "Objects as
Points"): per-class centre heatmaps, box size and sub-pixel centre offset, all at
stride 4 (or 8). The maps come from an FCN skip decoder over the encoder's stride
32/16/8 taps: 1x1 lateral convs, 2x transposed-conv upsampling (``fcnkit.nn.Upsample``,
bilinear init, learned) and additive fusion (``fcnkit.nn.fuse``), exactly the paper's
recipe, only with feature channels instead of class scores. The joint model is
MultiNet's idea (Teichmann et al. 2018): one encoder, an ``FCNDecoder`` for
segmentation and this head for boxes.

``forward`` returns raw dense maps; box decoding and NMS live in
``fcnkit.detection.decode``.
"""

from __future__ import annotations

import math
from pathlib import Path

from torch import Tensor, nn

from ..heads import BOXES, SEG, SEG_OUTPUT
from ..nn import Upsample, fuse, pad_to_multiple
from .encoders import Encoder, FeatureInfo, create_encoder
from .fcn import FCNDecoder
from .registry import register_model
from .weights import check_and_load, load_state_dict_file

# Initial centre probability everywhere (the focal-loss prior init). CenterNet's 0.1 trapped our
# detectors: the many background cells dominate the first steps (~3.5x the centres' loss on
# raccoon), every weight of the last 1x1 conv turns negative, the hidden ReLUs at the centres are
# driven to zero (no gradient flows there again) and no cell can score above the bias: all
# peaks stayed at 0.0995 for ~1000 steps. RetinaNet's 0.01 lets the centres lead from the start.
HEATMAP_PRIOR = 0.01


def _conv_bn_relu(in_ch: int, out_ch: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, k, padding=k // 2, bias=False),
                         nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class SkipFusionNeck(nn.Module):
    """FCN skip fusion over features: stride 32 -> 16 -> 8 (-> 4), one map of ``channels``.

    Each step upsamples 2x with a learnable bilinear-initialised transposed conv
    (kernel 4, stride 2, padding 1: exactly 2n out for n in, so the padded-input
    grid stays aligned and no crop is needed), adds the 1x1-projected skip tap, and
    mixes channels with a 3x3 conv (the per-channel ``Upsample`` cannot).
    """

    def __init__(self, taps: list[FeatureInfo], channels: int, *, output_stride: int = 4) -> None:
        super().__init__()
        if output_stride not in (4, 8):
            raise ValueError(f"detection output_stride must be 4 or 8, not {output_stride}")
        by_stride = {t.stride: t for t in taps}
        if not {8, 16, 32} <= set(by_stride):
            raise ValueError(f"encoder taps must include strides 8, 16, 32; got {sorted(by_stride)}")
        self.tap_strides = [t.stride for t in taps]
        self.output_stride = output_stride
        self.lateral = nn.ModuleDict({f"s{s}": _conv_bn_relu(by_stride[s].channels, channels, 1)
                                      for s in (32, 16, 8)})
        steps = (16, 8, 4) if output_stride == 4 else (16, 8)
        self.up = nn.ModuleDict({f"s{s}": Upsample(channels, 2, padding=1, learnable=True) for s in steps})
        self.mix = nn.ModuleDict({f"s{s}": _conv_bn_relu(channels, channels, 3) for s in steps})
        self.channels = channels

    def forward(self, features: list[Tensor]) -> Tensor:
        by_stride = dict(zip(self.tap_strides, features))
        x = self.lateral["s32"](by_stride[32])  # (N, ch, H/32, W/32)
        for s in (16, 8):
            x = fuse(self.up[f"s{s}"](x), self.lateral[f"s{s}"](by_stride[s]))  # (N, ch, H/s, W/s)
            x = self.mix[f"s{s}"](x)
        if self.output_stride == 4:
            x = self.mix["s4"](self.up["s4"](x))  # (N, ch, H/4, W/4): no stride-4 tap, so no skip
        return x


def _branch(in_ch: int, hidden: int, out_ch: int, bias: float = 0.0) -> nn.Sequential:
    last = nn.Conv2d(hidden, out_ch, 1)
    nn.init.normal_(last.weight, std=0.001)
    nn.init.constant_(last.bias, bias)
    return nn.Sequential(nn.Conv2d(in_ch, hidden, 3, padding=1), nn.ReLU(inplace=True), last)


class CenterNetHead(nn.Module):
    """Three 3x3 -> 1x1 branches: heatmap logits (C), box size (2) and centre offset (2).

    Size is (log w, log h) with w, h in output-map cells (see ``fcnkit.detection.targets``)
    and offset (dx, dy) in cells. The heatmap bias starts at logit(0.1) so the focal
    loss is not swamped by easy negatives at step 0.
    """

    def __init__(self, channels: int, num_classes: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or channels
        self.heatmap = _branch(channels, hidden, num_classes, math.log(HEATMAP_PRIOR / (1 - HEATMAP_PRIOR)))
        self.size = _branch(channels, hidden, 2)
        self.offset = _branch(channels, hidden, 2)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"heatmap": self.heatmap(x), "size": self.size(x), "offset": self.offset(x)}


def _crop_maps(maps: dict[str, Tensor], h: int, w: int, stride: int) -> dict[str, Tensor]:
    """Drop map cells that only saw bottom/right padding: (.., ceil(H/s), ceil(W/s))."""
    mh, mw = math.ceil(h / stride), math.ceil(w / stride)
    return {k: v[..., :mh, :mw] for k, v in maps.items()}


class FCNDetector(nn.Module):
    """``encoder`` -> ``SkipFusionNeck`` -> ``CenterNetHead``: a box detector with no FC layer.

    ``forward(x)`` takes (N, 3, H, W) normalised images, any H, W >= 1, and returns
    ``{"heatmap": (N, C, h, w) logits, "size": (N, 2, h, w) log-size, "offset": (N, 2, h, w)}``
    with h = ceil(H / output_stride), w = ceil(W / output_stride); C is the head's class
    count (``model.spec.det_classes``).
    """

    def __init__(self, encoder: Encoder, neck: SkipFusionNeck, head: CenterNetHead) -> None:
        super().__init__()
        self.encoder, self.neck, self.head = encoder, neck, head
        self.output_stride = neck.output_stride
        self.pad_multiple = encoder.output_stride

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h, w = x.shape[-2:]
        maps = self.head(self.neck(self.encoder(pad_to_multiple(x, self.pad_multiple))))
        return _crop_maps(maps, h, w, self.output_stride)


class JointFCN(nn.Module):
    """One encoder, two decoders: ``FCNDecoder`` segmentation logits and detection maps.

    ``forward(x)`` returns ``"seg"``: (N, K, H, W) logits, K = ``spec.num_classes``, and the
    ``FCNDetector`` maps.
    """

    def __init__(self, encoder: Encoder, seg_decoder: FCNDecoder, neck: SkipFusionNeck,
                 head: CenterNetHead) -> None:
        super().__init__()
        self.encoder, self.seg_decoder, self.neck, self.head = encoder, seg_decoder, neck, head
        self.output_stride = neck.output_stride
        self.pad_multiple = encoder.output_stride

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h, w = x.shape[-2:]
        features = self.encoder(pad_to_multiple(x, self.pad_multiple))
        maps = _crop_maps(self.head(self.neck(features)), h, w, self.output_stride)
        return {SEG_OUTPUT: self.seg_decoder(features, (h, w)), **maps}  # seg: (N, K, H, W)


# --- registered builders ----------------------------------------------------------

def _parts(encoder: str, encoder_weights: str | Path | None, geometry: str, width: float,
           det_classes: int, output_stride: int, det_channels: int | None):
    if geometry != "fast":
        raise ValueError(f"detection models need geometry='fast' (box maps must align with the input "
                         f"grid); got {geometry!r}")
    if det_classes < 1:
        raise ValueError(f"need at least one detection class, got {det_classes}")
    enc = create_encoder(encoder, weights=encoder_weights, geometry=geometry, width=width)
    channels = det_channels or max(8, round(64 * width))
    neck = SkipFusionNeck(enc.feature_info, channels, output_stride=output_stride)
    return enc, neck, CenterNetHead(channels, det_classes)


def _load_weights(model: nn.Module, weights: str | Path | None) -> None:
    if weights is not None:
        check_and_load(model, load_state_dict_file(weights), source=str(weights))


@register_model(heads=(BOXES,))
def fcn8s_det(*, det_classes: int = 1, encoder: str = "vgg16", encoder_weights: str | Path | None = None,
              weights: str | Path | None = None, geometry: str = "fast", width: float = 1.0,
              output_stride: int = 4, det_channels: int | None = None) -> FCNDetector:
    """FCN detector: FCN-8s skip fusion of features to stride 4, CenterNet heads on top.

    Args:
        det_classes: object classes (one heatmap channel each).
        encoder, encoder_weights, width: as for ``fcn8s``.
        weights: a whole-model state dict.
        geometry: only ``"fast"``; the reference pad-100 geometry offsets the maps.
        output_stride: 4 (default) or 8.
        det_channels: neck/head width (default ``64 * width``, at least 8).

    Returns maps for input (N, 3, H, W): heatmap logits (N, C, h, w), log-size and offset
    (N, 2, h, w) in map cells, h = ceil(H / output_stride).
    """
    enc, neck, head = _parts(encoder, encoder_weights, geometry, width, det_classes, output_stride, det_channels)
    model = FCNDetector(enc, neck, head)
    _load_weights(model, weights)
    return model


@register_model(heads=(SEG, BOXES))
def fcn8s_joint(*, num_classes: int = 21, det_classes: int = 1, encoder: str = "vgg16",
                encoder_weights: str | Path | None = None, weights: str | Path | None = None,
                geometry: str = "fast", width: float = 1.0, learnable_upsampling: bool = False,
                output_stride: int = 4, det_channels: int | None = None) -> JointFCN:
    """Joint segmentation + detection on one encoder (MultiNet-style).

    Args:
        num_classes: segmentation classes (FCN-8s decoder).
        det_classes: detection classes.
        learnable_upsampling: for the segmentation decoder, as in ``fcn8s``.
        Others as for ``fcn8s_det``.

    Returns ``{"seg": (N, K, H, W), "heatmap": (N, C, h, w), "size", "offset": (N, 2, h, w)}``.
    """
    enc, neck, head = _parts(encoder, encoder_weights, geometry, width, det_classes, output_stride, det_channels)
    seg = FCNDecoder(enc.feature_info, num_classes, output_stride=8, geometry=geometry,
                     learnable_upsampling=learnable_upsampling)
    model = JointFCN(enc, seg, neck, head)
    _load_weights(model, weights)
    return model


__all__ = ["CenterNetHead", "FCNDetector", "JointFCN", "SkipFusionNeck",
           "fcn8s_det", "fcn8s_joint"]
