"""A transposed conv rewritten as a conv at the input's resolution and a depth-to-space.

The final upsampling of FCN-8s (``upscore8``: k = 16, stride 8) is a transposed conv.
Runtimes that quantise convolutions may leave a transposed one in float (OpenVINO's CPU
plugin on AVX2 runs it as fp32 between int8 layers). Each output pixel of a transposed
conv with stride s reads a fixed set of input taps that depends only on its phase
(its position modulo s), so the same sums come from an ordinary conv whose s*s*C_out
output channels are the phases, followed by ``pixel_shuffle`` (ONNX DepthToSpace): the
"sub-pixel convolution" (Shi et al. 2016). Exact, for the fast geometry's padding
(k = 2s, padding s/2, s even), where the output is s times the input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import Upsample


def _subpixel_weight(weight: Tensor, stride: int) -> Tensor:
    """(C_in, C_out, 2s, 2s) transposed-conv weight (padding s/2) -> (C_out*s*s, C_in, 3, 3) conv weight.

    Output pixel o = s*q + r of the transposed conv sums x[q - d] * w[r + s/2 + s*d] over the
    d in {-1, 0, 1} that keep the tap inside the kernel; a 3x3 conv padded by 1 reads x[q - 1 + a],
    so tap a = 1 - d of output channel (c, ry, rx) holds w[:, c, ry + s/2 + s*(1 - ay), ...]."""
    s, k = stride, weight.shape[-1]
    phase, tap = torch.arange(s, device=weight.device), torch.arange(3, device=weight.device)
    taps = phase[:, None] + s // 2 + s * (1 - tap)[None]  # (s phases, 3 taps)
    inside = (taps >= 0) & (taps < k)
    taps = taps.clamp(0, k - 1)
    w = weight[:, :, taps][:, :, :, :, taps]  # (C_in, C_out, s, 3, s, 3): phase y, tap y, phase x, tap x
    w = w * (inside[:, :, None, None] & inside[None, None]).to(w.dtype)
    return w.permute(1, 2, 4, 0, 3, 5).reshape(weight.shape[1] * s * s, weight.shape[0], 3, 3)


def _fits(up: Upsample) -> bool:
    """The rewrite is exact for the fast geometry's upsampling: kernel 2s, padding s/2 (s even),
    whose output is s times its input."""
    (s, _), (p, _), (k, _) = up.stride, up.padding, up.kernel_size
    return k == 2 * s and 2 * p == s and up.output_padding == (0, 0) and up.groups == 1 and up.dilation == (1, 1)


class SubpixelUpsample(nn.Module):
    """``Upsample`` as conv (phases as channels) + ``pixel_shuffle``: the same output.

    ``classes_only``: return each output pixel's class instead of its scores, as a (N, 1,
    s*H, s*W) uint8 map. ``pixel_shuffle`` only moves values, so the argmax over classes can
    run per phase *before* it: the depth-to-space and whatever crop follows then move one
    byte per pixel instead of C floats (what an export with ``--output labels`` wants)."""

    def __init__(self, up: Upsample) -> None:
        super().__init__()
        if not _fits(up):
            raise ValueError(f"sub-pixel rewrite is exact for kernel 2s, padding s/2; got kernel {up.kernel_size[0]}, "
                             f"stride {up.stride[0]}, padding {up.padding[0]}")
        s = up.stride[0]
        weight = _subpixel_weight(up.weight.detach(), s)
        self.conv = nn.Conv2d(up.in_channels, weight.shape[0], 3, padding=1, bias=False)
        self.conv.weight = nn.Parameter(weight, requires_grad=False)
        self.factor = s
        self.classes_only = False

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)  # (N, C*s*s, H, W): channel c*s*s + phase
        if not self.classes_only:
            return F.pixel_shuffle(y, self.factor)  # (N, C, s*H, s*W)
        n, _, h, w = y.shape
        phases = y.view(n, -1, self.factor ** 2, h, w)  # (N, C, s*s, H, W)
        # ArgMax over the class axis where it is: OpenVINO int8 on a Xeon ran this graph in 9.8 ms against
        # 14.3 ms with class_map's move of the classes innermost first (12.8 ms: argmax after the upsampling)
        classes = phases.argmax(1).to(torch.uint8)  # (N, s*s, H, W)
        return F.pixel_shuffle(classes, self.factor)  # (N, 1, s*H, s*W)


def rewritable_upsamplings(model: nn.Module) -> list[str]:
    """Names of the ``Upsample`` modules ``subpixel_upsampling`` would replace. The 2x steps
    stay transposed convs (tiny maps, nothing to gain)."""
    return [name for name, m in model.named_modules() if isinstance(m, Upsample) and m.factor >= 4 and _fits(m)]


def subpixel_upsampling(model: nn.Module) -> int:
    """Replace, in place, every rewritable upsampling (``rewritable_upsamplings``); returns how many."""
    names = rewritable_upsamplings(model)
    for name in names:
        up = model.get_submodule(name)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, SubpixelUpsample(up).to(up.weight.device))
    return len(names)


__all__ = ["SubpixelUpsample", "rewritable_upsamplings", "subpixel_upsampling"]

