"""Fold eval-mode BatchNorm into the preceding convolution.

In eval mode BN is an affine map per channel, so ``bn(conv(x))`` is one conv with
rescaled weights and a shifted bias: one pass over the activations instead of two.
ONNX Runtime and OpenVINO do this themselves; eager PyTorch does not.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(model: nn.Module, *, inplace: bool = False, by_order: bool = False) -> tuple[nn.Module, int]:
    """Fold every BatchNorm2d that directly follows a Conv2d; returns (model, folds).

    "Directly follows" means: the next sibling in an ``nn.Sequential`` (torchvision's
    ``Conv2dNormActivation``, ResNet downsample), the ``bnK`` sibling of a ``convK``
    attribute (torchvision's ResNet blocks and stem), or with ``by_order`` (what the eager
    runner does; exports leave BN to their runtime, as their int8 was calibrated) a BN
    registered right after a conv of as many channels in the same module, unless its name
    pairs it with another conv (timm's EfficientNet blocks: ``conv_pw``, ``bn1``, ``conv_dw``, ``bn2``, ...); that last
    rule only for a plain ``nn.Conv2d`` or a subclass declaring ``weights_as_stored`` (not,
    e.g., a conv that standardises its weights in ``forward``). The BN becomes
    ``nn.Identity`` (or the activation it carries).
    """
    if model.training:
        raise ValueError("fold BatchNorm in eval mode only (training BN uses batch statistics)")
    model = model if inplace else copy.deepcopy(model)
    folds = 0
    for parent in list(model.modules()):
        mods = parent._modules
        names = list(mods)
        pairs = list(zip(names, names[1:])) if isinstance(parent, nn.Sequential) else []
        pairs += [(n, "bn" + n[4:]) for n in names if n.startswith("conv") and "bn" + n[4:] in mods]
        if by_order:  # registered one after the other, as timm's blocks run them (a pair met twice folds once)
            pairs += [(a, b) for a, b in zip(names, names[1:]) if _in_order(mods, a, b)]
        for conv_name, bn_name in pairs:
            conv, bn = parent._modules[conv_name], parent._modules[bn_name]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                parent._modules[conv_name] = fuse_conv_bn_eval(conv, bn)
                # timm's BatchNormAct2d carries its activation: keep that, drop only the affine map
                act = getattr(bn, "act", None)
                parent._modules[bn_name] = act if isinstance(act, nn.Module) else nn.Identity()
                folds += 1
    return model, folds


def _in_order(mods: dict[str, nn.Module], a: str, b: str) -> bool:
    """``b`` is a BN of ``a``'s channels that no ``convK`` name claims, and ``a`` a conv that
    uses its weights as stored (``nn.Conv2d``, or a subclass declaring ``weights_as_stored``)."""
    conv, bn = mods[a], mods[b]
    claimed = b.startswith("bn") and "conv" + b[2:] in mods and "conv" + b[2:] != a
    plain = type(conv) is nn.Conv2d or getattr(type(conv), "weights_as_stored", False)
    return plain and not claimed and isinstance(bn, nn.BatchNorm2d) and bn.num_features == conv.out_channels


def count_batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


__all__ = ["fold_batchnorm", "count_batchnorms"]
