"""Counting work: FLOPs of a forward pass, so speeds can be quoted as GFLOP/s."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode


def count_flops(model: nn.Module, x: Tensor) -> tuple[int, Tensor]:
    """FLOPs (a multiply-add counts 2) of ``model(x)`` and its output, via PyTorch's counter."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = model(x)
    return counter.get_total_flops(), out
