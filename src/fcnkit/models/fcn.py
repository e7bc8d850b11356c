"""FCN-32s / 16s / 8s (and 4s): an encoder, a skip decoder, and the geometry that joins them.

The decoder is the paper's (sec. 4.2, fig. 3): 1x1 "score" convs on the stride-32,
16 and 8 taps, 2x transposed-conv upsampling between them, crop-and-add fusion, and
a final 32x/16x/8x upsampling back to the input. FCN-4s takes the paper's idea one
step further, a skip from the stride-4 tap (pool2), for classes a few pixels wide.
"""

from __future__ import annotations


from torch import Tensor, nn

from ..heads import SEG_OUTPUT
from ..nn import Upsample, fuse, pad_to_multiple
from .encoders import Encoder, FeatureInfo
from .geometry import CoordMap, crop_offset

SKIP_NAMES = {16: "score_pool4", 8: "score_pool3", 4: "score_pool2"}
FINAL_UPSAMPLE_NAMES = {32: "upscore", 16: "upscore16", 8: "upscore8", 4: "upscore4"}
STEP_UPSAMPLE_NAMES = {16: "upscore2", 8: "upscore_pool4", 4: "upscore_pool3"}
ATONCE_SCALES = {16: 0.01, 8: 0.0001}


class FCNDecoder(nn.Module):
    """Score, upsample and fuse down to ``output_stride`` (32, 16, 8 or 4).

    ``geometry="reference"`` uses the authors' unpadded transposed convs (kernel
    2f, stride f, padding 0) and crops at offsets derived from the encoder's
    coordinate maps; ``"fast"`` pads each transposed conv by f/2 so every map is
    exactly f times larger and aligned, with nothing to crop.
    ``skip_scales`` multiplies pool4/pool3 before scoring (0.01 / 0.0001 for the
    at-once net; applied to the input so the score biases stay unscaled).
    Score layers start at zero, so a fresh net predicts uniform class scores.
    """

    def __init__(self, taps: list[FeatureInfo], num_classes: int, *, output_stride: int = 8,
                 geometry: str = "fast", skip_scales: dict[int, float] | None = None,
                 learnable_upsampling: bool = False) -> None:
        super().__init__()
        if output_stride not in (32, 16, 8, 4):
            raise ValueError(f"output_stride must be 32, 16, 8 or 4, not {output_stride}")
        self.output_stride = output_stride
        self.skip_scales = dict(skip_scales or {})
        by_stride = {t.stride: t for t in taps}
        self.tap_strides = [t.stride for t in taps]  # what each encoder output is
        self.strides = [s for s in (16, 8, 4) if s >= output_stride]  # skips used, coarse to fine
        missing = [s for s in (32, *self.strides) if s not in by_stride]
        if missing:
            raise ValueError(f"FCN-{output_stride}s needs encoder taps at strides {missing}; the encoder has "
                             f"{sorted(by_stride)}")

        def upsample(factor: int) -> Upsample:
            pad = 0 if geometry == "reference" else factor // 2
            return Upsample(num_classes, factor, padding=pad, learnable=learnable_upsampling)

        self.score_fr = _zero_conv(by_stride[32].channels, num_classes)
        for s in self.strides:
            setattr(self, STEP_UPSAMPLE_NAMES[s], upsample(2))
            setattr(self, SKIP_NAMES[s], _zero_conv(by_stride[s].channels, num_classes))
        setattr(self, FINAL_UPSAMPLE_NAMES[output_stride], upsample(output_stride))
        self.crops = self._crop_offsets(by_stride) if geometry == "reference" else {}

    def _crop_offsets(self, by_stride: dict[int, FeatureInfo]) -> dict[str, int]:
        """Caffe's crop offsets from coordinate maps: 5/9/31 (8s), 5/27 (16s), 19 (32s)."""
        crops, m = {}, by_stride[32].coord
        for s in self.strides:
            m = m.then(getattr(self, STEP_UPSAMPLE_NAMES[s]))
            crops[SKIP_NAMES[s]] = crop_offset(by_stride[s].coord, m)
        m = m.then(getattr(self, FINAL_UPSAMPLE_NAMES[self.output_stride]))
        crops["final"] = crop_offset(m, CoordMap())
        return crops

    def forward(self, features: list[Tensor], size: tuple[int, int]) -> Tensor:
        by_stride = dict(zip(self.tap_strides, features))
        score = self.score_fr(by_stride[32])  # (N, C, H/32, W/32)
        for s in self.strides:
            score = getattr(self, STEP_UPSAMPLE_NAMES[s])(score)  # 2x: (N, C, H/s, W/s)
            skip = by_stride[s] * self.skip_scales[s] if s in self.skip_scales else by_stride[s]
            score = fuse(score, getattr(self, SKIP_NAMES[s])(skip), self.crops.get(SKIP_NAMES[s], 0))
        score = getattr(self, FINAL_UPSAMPLE_NAMES[self.output_stride])(score)  # (N, C, >=H, >=W)
        o = self.crops.get("final", 0)
        return score[..., o:o + size[0], o:o + size[1]]  # (N, C, H, W)


def _zero_conv(in_ch: int, out_ch: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_ch, out_ch, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class FCN(nn.Module):
    """A fully convolutional segmentation net: ``encoder`` -> ``decoder`` -> logits.

    ``forward(x)`` takes (N, 3, H, W) normalised images of any H, W >= 1 and returns
    ``{"seg": raw logits (N, num_classes, H, W)}``: every fcnkit model returns a dict
    with fixed keys (``fcnkit.heads.output_names``), as torchvision's segmentation
    models return ``{"out": ...}``. In the fast geometry the input is zero-padded
    (bottom/right) to a multiple of the encoder's stride and the logits cropped back.

    State-dict keys are flat (``conv1_1.weight``, ``score_fr.bias``, ``upscore8.weight``)
    with no ``encoder.``/``decoder.`` prefix: those are the reference PyTorch port's
    names, so its converted Caffe weights load with ``strict=True``.
    """

    def __init__(self, encoder: Encoder, decoder: FCNDecoder, *, geometry: str) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.pad_multiple = encoder.output_stride if geometry == "fast" else 1
        enc_keys = set(encoder.state_dict())
        clash = enc_keys & set(decoder.state_dict())
        if clash:
            raise ValueError(f"encoder and decoder share state-dict keys {sorted(clash)}")
        self.register_state_dict_post_hook(_flatten_keys)
        self.register_load_state_dict_pre_hook(_nest_keys)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.pad_multiple)  # (N, 3, H', W'), H' and W' multiples of 32 (fast geometry)
        return {SEG_OUTPUT: self.decoder(self.encoder(x), (h, w))}  # (N, C, H, W)


def _flatten_keys(module: FCN, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    for part in ("encoder.", "decoder."):
        for key in [k for k in state_dict if k.startswith(prefix + part)]:
            state_dict[prefix + key[len(prefix + part):]] = state_dict.pop(key)


def _nest_keys(module: FCN, state_dict: dict, prefix: str, *args) -> None:
    enc = {prefix + k for k in module.encoder.state_dict()}
    dec = {prefix + k for k in module.decoder.state_dict()}
    for key in list(state_dict):
        if key in enc:
            state_dict[prefix + "encoder." + key[len(prefix):]] = state_dict.pop(key)
        elif key in dec:
            state_dict[prefix + "decoder." + key[len(prefix):]] = state_dict.pop(key)


__all__ = ["FCN", "FCNDecoder", "ATONCE_SCALES"]
