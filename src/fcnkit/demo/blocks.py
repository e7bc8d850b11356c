"""The building blocks, shown: a 1x1 conv is a fully connected layer; a transposed conv
upsamples with a known output size and, initialised bilinear, keeps a constant constant."""

from __future__ import annotations

import torch
from torch import nn

from ..nn import Upsample, convolutionalize, transposed_output_size


def demo_1x1(print_fn=print) -> float:
    """Compare a small FC classifier with its convolutional twin; return the max |diff|."""
    torch.manual_seed(0)
    features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))  # 3x8x8 -> 8x4x4
    fc1, fc2 = nn.Linear(8 * 4 * 4, 16), nn.Linear(16, 5)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        f = features(x)
        fc_out = fc2(torch.relu(fc1(f.flatten(1))))  # (2, 5)
        conv_head = nn.Sequential(convolutionalize(fc1, 8, 4), nn.ReLU(), convolutionalize(fc2))
        conv_out = conv_head(f)  # (2, 5, 1, 1)
        diff = (fc_out - conv_out.flatten(1)).abs().max().item()
        big = conv_head(features(torch.randn(1, 3, 20, 28)))  # a larger image -> a map of predictions
    print_fn("1x1 convolution = fully connected layer")
    print_fn(f"  fc   output[0]: {[round(v, 4) for v in fc_out[0].tolist()]}")
    print_fn(f"  conv output[0]: {[round(v, 4) for v in conv_out[0].flatten().tolist()]}")
    print_fn(f"  max |difference| = {diff:.2e}")
    print_fn(f"  the conv twin also takes a 20x28 image: output {tuple(big.shape)} "
             f"(a {big.shape[2]}x{big.shape[3]} map of class scores)")
    return diff


TRANSPOSE_CASES = [(4, 4, 2, 1), (5, 4, 2, 0), (7, 16, 8, 4), (16, 4, 2, 0), (3, 3, 1, 1), (10, 64, 32, 16)]


def demo_transpose(print_fn=print) -> bool:
    """Check the output-size formula against PyTorch and show bilinear upsampling."""
    print_fn("transposed convolution: out = (n - 1) * stride - 2 * padding + kernel")
    print_fn(f"  {'n':>4} {'kernel':>6} {'stride':>6} {'pad':>4} {'formula':>8} {'pytorch':>8}")
    ok = True
    for n, k, s, p in TRANSPOSE_CASES:
        expected = transposed_output_size(n, k, s, p)
        actual = nn.ConvTranspose2d(1, 1, k, s, p)(torch.zeros(1, 1, n, n)).shape[-1]
        ok &= expected == actual
        print_fn(f"  {n:>4} {k:>6} {s:>6} {p:>4} {expected:>8} {actual:>8}")
    up = Upsample(1, 2, padding=1)
    with torch.no_grad():
        y = up(torch.full((1, 1, 4, 4), 3.0))
    print_fn(f"  bilinear 2x of a constant 3.0 map (4x4 -> {y.shape[-2]}x{y.shape[-1]}), interior row: "
             f"{[round(v, 3) for v in y[0, 0, 3, 1:-1].tolist()]}")
    return ok
