"""The three building blocks of an FCN (Long, Shelhamer & Darrell 2015, sec. 3).

1. ``convolutionalize``: a fully connected layer *is* a convolution whose kernel
   covers its whole input; rewriting it as one lets the net slide over any size.
2. ``bilinear_kernel`` / ``Upsample``: in-network upsampling is a transposed
   convolution ("backwards strided convolution"), initialised to bilinear
   interpolation and optionally learned.
3. ``crop_like`` / ``fuse``: a skip connection adds a coarse, upsampled score map
   to a finer one after aligning them exactly.

And from scores to classes: ``class_map`` / ``pixel_classes``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .heads import LABELS_OUTPUT, SEG_OUTPUT


# --- 1. fully connected -> convolution -------------------------------------------

def convolutionalize(linear: nn.Linear, in_channels: int | None = None,
                     kernel_size: int | tuple[int, int] = 1) -> nn.Conv2d:
    """Return the ``nn.Conv2d`` computing ``linear`` at every spatial position.

    A layer over channels becomes a 1x1 conv (``in_channels`` defaults to
    ``linear.in_features``). A layer over a flattened ``C x k x k`` map (VGG fc6:
    25088 = 512*7*7 -> 4096) becomes a ``k x k`` conv over ``C`` channels; the
    weight ``(out, C*k*k)`` is viewed as ``(out, C, k, k)``, which matches the
    row-major order in which ``torch.flatten`` laid the map out.
    """
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    if in_channels is None:
        in_channels = linear.in_features // (kh * kw)
    if in_channels * kh * kw != linear.in_features:
        raise ValueError(
            f"cannot convolutionalize Linear({linear.in_features} -> {linear.out_features}) "
            f"as a {kh}x{kw} conv over {in_channels} channels: {in_channels}*{kh}*{kw} "
            f"!= {linear.in_features}")
    conv = nn.Conv2d(in_channels, linear.out_features, (kh, kw), bias=linear.bias is not None)
    with torch.no_grad():
        # (out, C*kh*kw) -> (out, C, kh, kw)
        conv.weight.copy_(linear.weight.view(linear.out_features, in_channels, kh, kw))
        if linear.bias is not None:
            conv.bias.copy_(linear.bias)
    return conv.to(linear.weight.device, linear.weight.dtype)


# --- 2. transposed convolution ----------------------------------------------------

def transposed_output_size(n: int, kernel: int, stride: int = 1, padding: int = 0,
                           output_padding: int = 0, dilation: int = 1) -> int:
    """Output length of a transposed convolution along one axis."""
    return (n - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def bilinear_kernel(size: int) -> Tensor:
    """The ``size x size`` bilinear interpolation kernel (the authors' ``upsample_filt``).

    ``f = ceil(size/2)``, centre ``c = f - 1`` (odd) or ``f - 0.5`` (even);
    ``w(i, j) = (1 - |i-c|/f) (1 - |j-c|/f)``. ``bilinear_kernel(4)`` has taps
    ``[.25, .75, .75, .25]`` along each axis.
    """
    f = math.ceil(size / 2)
    c = f - 1 if size % 2 == 1 else f - 0.5
    taps = 1 - (torch.arange(size, dtype=torch.float64) - c).abs() / f
    return torch.outer(taps, taps).float()


class Upsample(nn.ConvTranspose2d):
    """Per-class upsampling by a transposed conv initialised to bilinear interpolation.

    The weight is diagonal over channels (class c only feeds class c), as in the
    reference nets. ``learnable=False`` freezes it, which is what the authors'
    released models do ("we fix the interpolation"), and which saves the optimiser
    from touching C*C*k*k mostly-zero weights.
    """

    def __init__(self, channels: int, factor: int, *, kernel_size: int | None = None,
                 padding: int = 0, learnable: bool = False) -> None:
        kernel_size = 2 * factor if kernel_size is None else kernel_size
        super().__init__(channels, channels, kernel_size, stride=factor, padding=padding, bias=False)
        self.factor = factor
        self.reset_parameters_bilinear()
        self.weight.requires_grad_(learnable)

    def reset_parameters_bilinear(self) -> None:
        k = bilinear_kernel(self.kernel_size[0])
        with torch.no_grad():
            self.weight.zero_()
            for c in range(self.in_channels):
                self.weight[c, c] = k

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        """While the weight is diagonal (frozen, as released), one kernel per class: a grouped
        transposed conv, C times fewer multiply-adds than the dense one, the same sums (the
        off-diagonal weights are exact zeros). Learnable weights keep the dense path, so the
        gradient can reach off-diagonal weights; exports keep it too (no data-dependent branch)."""
        if (torch.is_grad_enabled() and self.weight.requires_grad or torch.compiler.is_compiling() or output_size
                or x.device.type != "cpu"):  # measured on CPUs only
            return super().forward(x, output_size)
        w = self._per_class_weight()
        if w is None:
            return super().forward(x)
        return F.conv_transpose2d(x, w, None, self.stride, self.padding, self.output_padding, self.in_channels,
                                  self.dilation)

    def _per_class_weight(self) -> Tensor | None:
        """(C, 1, k, k) diagonal of the weight, or None if a class feeds another; cached until
        the weight changes (a load, a move, a training step)."""
        w = self.weight
        key = (w.data_ptr(), None if w.is_inference() else w._version, w.dtype, w.device)  # inference tensors
        # have no version counter (and cannot change outside inference mode)
        if getattr(self, "_per_class_key", None) != key:
            eye = torch.eye(self.in_channels, dtype=torch.bool, device=w.device)[:, :, None, None]
            diagonal = self.in_channels == self.out_channels and self.groups == 1 and not w[~eye.expand_as(w)].any()
            self._per_class = w.detach()[eye.expand_as(w)].view(self.in_channels, 1, *w.shape[2:]).clone() \
                if diagonal else None
            self._per_class_key = key
        return self._per_class


# --- 3. skip connections ----------------------------------------------------------

def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Zero-pad (N, C, H, W) at the bottom/right to multiples of ``multiple`` (no copy if already)."""
    h, w = x.shape[-2:]
    ph, pw = math.ceil(h / multiple) * multiple - h, math.ceil(w / multiple) * multiple - w
    return F.pad(x, (0, pw, 0, ph)) if ph or pw else x  # (N, C, H', W')


def crop_like(x: Tensor, reference: Tensor, offset: int = 0) -> Tensor:
    """Crop ``x`` (N,C,H,W) to ``reference``'s H,W starting at ``offset`` on both axes.

    This is Caffe's ``Crop`` layer as FCN uses it: the offset comes from the layers'
    coordinate maps (see ``fcnkit.models.geometry``), so the two maps line up
    pixel for pixel.
    """
    h, w = reference.shape[-2:]
    if x.shape[-2] < offset + h or x.shape[-1] < offset + w:
        raise ValueError(f"cannot crop {tuple(x.shape[-2:])} to {(h, w)} at offset {offset}")
    return x[..., offset:offset + h, offset:offset + w]


def fuse(coarse_upsampled: Tensor, fine_score: Tensor, offset: int = 0) -> Tensor:
    """Skip fusion: element-wise sum after aligning ``fine_score`` to the upsampled map."""
    return coarse_upsampled + crop_like(fine_score, coarse_upsampled, offset)


# --- 4. from scores to classes ------------------------------------------------------

def class_map(scores: Tensor, dim: int = 1) -> Tensor:
    """The class of each pixel: the argmax of ``scores`` over ``dim``, e.g. (N, C, H, W) -> (N, H, W).

    Ties go to the lowest class, as ``argmax``'s. On the CPU, torch reduces over an outer
    dimension of a contiguous tensor several times more slowly than over the innermost one
    (11x360x480 scores on an AMD EPYC: 28 ms against 4.6 ms with the copy that moves the
    classes innermost), so the classes are moved innermost first (no copy when the scores
    are channels-last already)."""
    if scores.device.type != "cpu":
        return scores.argmax(dim)
    return scores.movedim(dim, -1).contiguous().argmax(-1)


def pixel_classes(outputs: Mapping[str, Tensor]) -> Tensor:
    """The (N, H, W) classes of a segmenting model's outputs: an export's ``labels`` as they
    are (the argmax ran in its graph), else the ``class_map`` of its ``seg`` scores."""
    if LABELS_OUTPUT in outputs:
        return outputs[LABELS_OUTPUT].long()
    return class_map(outputs[SEG_OUTPUT])
