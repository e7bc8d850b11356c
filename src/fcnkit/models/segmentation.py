"""The FCN builders of the paper, registered by name."""

from __future__ import annotations

from pathlib import Path

from .encoders import create_encoder
from .fcn import ATONCE_SCALES, FCN, FCNDecoder
from .registry import register_model
from .weights import check_and_load, load_state_dict_file


def _build(output_stride: int, *, num_classes: int, encoder: str, encoder_weights: str | Path | None,
           weights: str | Path | None, geometry: str, width: float, learnable_upsampling: bool,
           skip_scales: dict[int, float] | None = None) -> FCN:
    enc = create_encoder(encoder, weights=encoder_weights, geometry=geometry, width=width)
    dec = FCNDecoder(enc.feature_info, num_classes, output_stride=output_stride, geometry=geometry,
                     skip_scales=skip_scales, learnable_upsampling=learnable_upsampling)
    model = FCN(enc, dec, geometry=geometry)
    if weights is not None:
        check_and_load(model, load_state_dict_file(weights), source=str(weights))
    return model


def _doc(stride: int) -> str:
    return f"""FCN-{stride}s (Long et al. 2015, sec. 4.2): predictions fused down to stride {stride}.

    Args:
        num_classes: classes to score (21 for PASCAL VOC, 11 for CamVid).
        encoder: one of ``fcnkit.models.encoders.list_encoders()``.
        encoder_weights: ``None`` (random init), ``"imagenet"`` (torchvision's weights
            API) or a path to a torchvision-format state dict.
        weights: a whole-model state dict (our checkpoints or the reference port's keys;
            for the port's converted Caffe weights set
            ``model.spec = model.spec.replace(preprocessing=CAFFE_VGG)``).
        geometry: ``"fast"`` (default; pad input to a multiple of 32, exact alignment)
            or ``"reference"`` (the authors' pad-100 geometry with crops; VGG-16 only).
        width: channel multiplier for narrow variants (1.0 is the paper's net).
        learnable_upsampling: learn the transposed convs (bilinear init) instead of
            keeping them fixed as the released models do.

    Returns ``{{"seg": logits (N, num_classes, H, W)}}`` for input (N, 3, H, W), any H, W >= 1.
    """


def _builder(stride: int, name: str, skip_scales: dict[int, float] | None = None):
    def build(*, num_classes: int = 21, encoder: str = "vgg16", encoder_weights: str | Path | None = None,
              weights: str | Path | None = None, geometry: str = "fast", width: float = 1.0,
              learnable_upsampling: bool = False) -> FCN:
        return _build(stride, num_classes=num_classes, encoder=encoder, encoder_weights=encoder_weights,
                      weights=weights, geometry=geometry, width=width,
                      learnable_upsampling=learnable_upsampling, skip_scales=skip_scales)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = _doc(stride)
    return register_model(build)


fcn32s = _builder(32, "fcn32s")
fcn16s = _builder(16, "fcn16s")
fcn8s = _builder(8, "fcn8s")
fcn4s = _builder(4, "fcn4s")
fcn4s.__doc__ = ("FCN-4s: FCN-8s with one more skip, from the stride-4 tap (pool2), the paper's idea one step\n"
                 "    further for thin classes (poles, signs). Not in the paper.\n" + _doc(4))
fcn8s_atonce = _builder(8, "fcn8s_atonce", ATONCE_SCALES)
fcn8s_atonce.__doc__ = ("FCN-8s at-once: all skips trained jointly from VGG-16, pool4 scaled by 0.01 and\n"
                        "    pool3 by 0.0001 before scoring (the authors' fcn8s-atonce).\n" + _doc(8))
