"""Truncated-SVD factorisation of VGG's fc6/fc7, as Fast R-CNN did for its FC layers.

fc6 is a 7x7 conv 512 -> 4096 (a 4096 x 25088 matrix applied at every stride-32
position) and fc7 a 1x1 conv 4096 -> 4096: ~40 of the ~156 GFLOP of FCN-8s at
360x480. Writing ``W ~= U_r S_r V_r^T`` turns each into two convs, ``V_r^T`` (rank x
in, same kernel and padding, no bias) then ``U_r S_r`` (out x rank, 1x1, with the
bias), costing ``r * (in*k*k + out)`` instead of ``out * in*k*k`` multiply-adds
per position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .spec import spec_of

FC_LAYERS = ("fc6", "fc7")


@dataclass
class Spectrum:
    """Left singular vectors and singular values of one conv's weight matrix, computed once
    and cut at many ranks. The right factor is derived per rank from the matrix itself."""

    u: Tensor  # (out, k) left singular vectors, by descending singular value
    s: Tensor  # (k,) singular values, descending
    w: Tensor  # (out, in*kh*kw) the weight matrix

    def energy_rank(self, energy: float) -> int:
        """Smallest rank keeping ``energy`` (0..1] of the squared singular values."""
        if not 0 < energy <= 1:
            raise ValueError(f"energy must be in (0, 1], not {energy}")
        cum = (self.s.double() ** 2).cumsum(0) / (self.s.double() ** 2).sum()
        return int(torch.searchsorted(cum, torch.tensor(energy, dtype=torch.float64) - 1e-12)) + 1

    @property
    def full_rank(self) -> int:
        return self.s.numel()

    def factors(self, rank: int) -> tuple[Tensor, Tensor]:
        """(A, B) with ``B @ A`` the best rank-``rank`` approximation; S split evenly between them,
        so neither factor has a huge dynamic range (kinder to int8). A: (r, in), B: (out, r)."""
        root = self.s[:rank].clamp_min(float(self.s[0]) * 1e-12).sqrt()
        a = (self.u[:, :rank].T @ self.w) / root[:, None]  # S^1/2 V^T = S^-1/2 U^T W
        return a, self.u[:, :rank] * root


def spectrum(conv: nn.Conv2d) -> Spectrum:
    """SVD of the conv's (out, in*kh*kw) matrix. For wide matrices (fc6: 4096 x 25088) through
    the eigendecomposition of the small Gram matrix ``W W^T`` -- minutes faster than a full
    SVD on a CPU, and exact for the leading singular values the truncation keeps."""
    w = conv.weight.detach().reshape(conv.out_channels, -1)  # (out, in*kh*kw)
    if w.shape[0] <= w.shape[1]:
        gram = (w.double() @ w.double().T) if w.numel() < 4_000_000 else (w.float() @ w.float().T).double()
        evals, evecs = torch.linalg.eigh(gram)  # ascending
        order = evals.flip(0)
        return Spectrum(evecs.flip(1), order.clamp_min(0).sqrt(), w.double())
    u, s, _ = torch.linalg.svd(w.double(), full_matrices=False)
    return Spectrum(u, s, w.double())


def fc_convs(model: nn.Module) -> dict[str, nn.Module]:
    """The encoder's fc6/fc7 (plain convs or already factorised); ValueError if it has none."""
    enc = getattr(model, "encoder", None)
    found = {n: getattr(enc, n) for n in FC_LAYERS if enc is not None and hasattr(enc, n)}
    if len(found) != len(FC_LAYERS):
        raise ValueError(f"SVD factorisation needs VGG's fc6/fc7; encoder {spec_of(model).config.get('encoder')!r} "
                         f"has none")
    return found


def factorized_conv(conv: nn.Conv2d, rank: int, spec: Spectrum | None = None) -> nn.Sequential:
    """``conv`` as (rank x in, k x k) then (out x rank, 1x1) convs; weights from ``spec``
    (computed when None). ``rank`` is clipped to the matrix rank."""
    spec = spec or spectrum(conv)
    rank = max(1, min(int(rank), spec.full_rank))
    seq = empty_factorized_conv(conv, rank)
    first, second = seq[0], seq[1]
    a, b = spec.factors(rank)
    dtype = conv.weight.dtype
    with torch.no_grad():
        # (r, in*k*k) -> (r, in, k, k)
        first.weight.copy_(a.reshape(rank, conv.in_channels, *conv.kernel_size).to(dtype))
        second.weight.copy_(b.reshape(conv.out_channels, rank, 1, 1).to(dtype))  # (out, r) -> (out, r, 1, 1)
        if conv.bias is not None:
            second.bias.copy_(conv.bias.detach())
    return seq.to(conv.weight.device)


def empty_factorized_conv(conv: nn.Conv2d, rank: int) -> nn.Sequential:
    """The factorised structure with uninitialised weights, to load a saved state dict into."""
    first = nn.Conv2d(conv.in_channels, rank, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                      dilation=conv.dilation, bias=False)
    second = nn.Conv2d(rank, conv.out_channels, 1, bias=conv.bias is not None)
    return nn.Sequential(first, second)


def apply_svd(model: nn.Module, ranks: dict[str, int], spectra: dict[str, Spectrum] | None = None, *,
              weights: bool = True) -> nn.Module:
    """Replace ``encoder.fc6``/``fc7`` by their rank-``ranks[name]`` factorisations, in place.

    ``spectra`` reuses SVDs across ranks (a rank search computes each once);
    ``weights=False`` only builds the structure (for loading a saved factorised model).
    """
    convs = fc_convs(model)
    for name, rank in ranks.items():
        if name not in convs:
            raise ValueError(f"unknown layer {name!r} to factorise; choose from {FC_LAYERS}")
        conv = convs[name]
        if not isinstance(conv, nn.Conv2d):
            raise ValueError(f"{name} is already factorised")
        new = (factorized_conv(conv, rank, (spectra or {}).get(name)) if weights
               else empty_factorized_conv(conv, rank))
        setattr(model.encoder, name, new)
    return model


def svd_ranks(model: nn.Module) -> dict[str, int]:
    """The ranks of the factorised fc layers of ``model`` (empty if none is factorised)."""
    return {n: m[0].out_channels for n, m in fc_convs(model).items() if isinstance(m, nn.Sequential)}


__all__ = ["Spectrum", "spectrum", "factorized_conv", "apply_svd", "svd_ranks", "fc_convs", "FC_LAYERS"]
