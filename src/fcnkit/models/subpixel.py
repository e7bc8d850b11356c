"""A transposed conv rewritten as a conv at the input's resolution and a depth-to-space.

The final upsampling of FCN-8s (``upscore8``: k = 16, stride 8) is a transposed conv.
Runtimes that quantise convolutions may leave a transposed one in float (OpenVINO's CPU
plugin on AVX2 runs it as fp32 between int8 layers). Each output pixel of a transposed
conv with stride s reads a fixed set of input taps that depends only on its phase
(its position modulo s), so the same sums come from an ordinary conv whose s*s*C_out
output channels are the phases, followed by ``pixel_shuffle`` (ONNX DepthToSpace): the
"sub-pixel convolution" (Shi et al. 2016). Exact, for the fast geometry's padding
(k = 2s, padding s/2), where the output is s times the input.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import Upsample


def subpixel_weight(weight: Tensor, stride: int, padding: int) -> tuple[Tensor, int]:
    """(C_in, C_out, k, k) transposed-conv weight -> ((C_out*s*s, C_in, K, K) conv weight, pad).

    Output pixel o = s*q + r of the transposed conv sums x[q - d] * w[r + padding + s*d]
    over the d that keep the tap inside the kernel; the conv reads x[q - pad + a] with
    a = pad - d, so its K = d_max - d_min + 1 taps cover every phase."""
    c_in, c_out, k, _ = weight.shape
    s, p = stride, padding
    ds = [d for r in range(s) for d in range(-(k + s), k + s) if 0 <= r + p + s * d < k]
    d_min, d_max = min(ds), max(ds)
    if d_max != -d_min:
        raise ValueError(f"sub-pixel rewrite needs a symmetric tap range (k = 2s, padding s/2), "
                         f"got k={k}, stride={s}, padding={p}")
    size = d_max - d_min + 1
    out = weight.new_zeros(c_out, s, s, c_in, size, size)
    for ry in range(s):
        for ay in range(size):
            ty = ry + p + s * (d_max - ay)
            if not 0 <= ty < k:
                continue
            for rx in range(s):
                for ax in range(size):
                    tx = rx + p + s * (d_max - ax)
                    if 0 <= tx < k:
                        out[:, ry, rx, :, ay, ax] = weight[:, :, ty, tx].t()
    return out.reshape(c_out * s * s, c_in, size, size), d_max


def _fits(up: Upsample) -> bool:
    """The rewrite is exact for the fast geometry's upsampling: kernel 2s, padding s/2."""
    (s, _), (p, _), (k, _) = up.stride, up.padding, up.kernel_size
    return k == 2 * s and p == s // 2 and up.output_padding == (0, 0) and up.groups == 1 and up.dilation == (1, 1)


class SubpixelUpsample(nn.Module):
    """``Upsample`` as conv (phases as channels) + ``pixel_shuffle``: the same output."""

    def __init__(self, up: Upsample) -> None:
        super().__init__()
        (s, _), (p, _), (k, _) = up.stride, up.padding, up.kernel_size
        if not _fits(up):
            raise ValueError(f"sub-pixel rewrite is exact for kernel 2s, padding s/2; got kernel {k}, stride {s}, "
                             f"padding {p}")
        weight, pad = subpixel_weight(up.weight.detach(), s, p)
        self.conv = nn.Conv2d(up.in_channels, weight.shape[0], weight.shape[-1], padding=pad, bias=False)
        self.conv.weight = nn.Parameter(weight, requires_grad=False)
        self.factor = s

    def forward(self, x: Tensor) -> Tensor:
        return F.pixel_shuffle(self.conv(x), self.factor)  # (N, C, s*H, s*W)


def rewritable_upsamplings(model: nn.Module, *, min_factor: int = 4) -> list[str]:
    """Names of the ``Upsample`` modules ``subpixel_upsampling`` would replace. The 2x steps
    stay transposed convs (tiny maps, nothing to gain)."""
    return [name for name, m in model.named_modules() if isinstance(m, Upsample) and m.factor >= min_factor
            and _fits(m)]


def subpixel_upsampling(model: nn.Module, *, min_factor: int = 4) -> int:
    """Replace, in place, every rewritable upsampling (``rewritable_upsamplings``); returns how many."""
    names = rewritable_upsamplings(model, min_factor=min_factor)
    for name in names:
        up = model.get_submodule(name)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, SubpixelUpsample(up).to(up.weight.device))
    return len(names)


__all__ = ["SubpixelUpsample", "rewritable_upsamplings", "subpixel_upsampling", "subpixel_weight"]

