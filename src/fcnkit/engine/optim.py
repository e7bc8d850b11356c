"""Optimiser with the reference parameter groups, and per-iteration lr schedules.

The authors' Caffe solvers gave biases twice the learning rate and no weight decay
(``lr_mult: 2, decay_mult: 0``); ``bias_lr_mult`` / ``bias_decay`` express that.
Norm-layer scales and shifts are treated like biases (1-d parameters), the usual
modern choice. Fixed (non-learnable) upsampling kernels are not optimised at all.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import TrainConfig


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """[weights: lr, weight_decay] + [biases and norm params: lr * bias_lr_mult, decay or 0],
    each split into decoder/head and encoder (lr * encoder_lr_mult) when that is not 1.

    A pretrained encoder is fine-tuned more gently than the freshly initialised decoder.
    The first group is always the decoder's weights, so its lr is the one logged."""
    encoder = getattr(model, "encoder", None)
    in_encoder = {id(p) for p in encoder.parameters()} if encoder is not None and cfg.encoder_lr_mult != 1 else set()
    split: dict[tuple[bool, bool], list] = {(e, b): [] for e in (False, True) for b in (False, True)}
    for p in model.parameters():
        if p.requires_grad:
            split[(id(p) in in_encoder, p.ndim <= 1)].append(p)
    groups = []
    for (enc, bias), params in split.items():
        if params or (not enc and not bias):
            lr = cfg.lr * (cfg.encoder_lr_mult if enc else 1.0) * (cfg.bias_lr_mult if bias else 1.0)
            decay = cfg.weight_decay if not bias or cfg.bias_decay else 0.0
            groups.append({"params": params, "lr": lr, "weight_decay": decay})
    return groups


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def lr_factor(iteration: int, *, total: int, schedule: str, power: float = 0.9, warmup_iters: int = 0,
              warmup_factor: float = 0.001) -> float:
    """Multiplier of the base lr at ``iteration`` (0-based) of ``total``: linear warm-up
    from ``warmup_factor`` to 1, then fixed / poly ``(1 - t/T) ** power`` / cosine."""
    if schedule == "fixed":
        decay = 1.0
    else:
        t = min(iteration, total) / max(total, 1)
        decay = (1 - t) ** power if schedule == "poly" else 0.5 * (1 + math.cos(math.pi * t))
    if iteration < warmup_iters:
        alpha = iteration / warmup_iters
        decay *= warmup_factor * (1 - alpha) + alpha
    return decay


WARMUP_SHARE = 0.2  # warm-up takes at most this share of a run


def warmup_for(warmup_iters: int, total_iters: int) -> int:
    """The warm-up a run of ``total_iters`` gets: a recipe's 45 warm-up steps would leave a
    12-step run at lr ~0 (it would train nothing), so warm-up is clamped to a fifth of the run."""
    return min(warmup_iters, int(WARMUP_SHARE * total_iters))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_iters: int
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per iteration (its state is just ``last_epoch``)."""
    warmup = warmup_for(cfg.warmup_iters, total_iters)

    def factor(it: int) -> float:
        return lr_factor(it, total=total_iters, schedule=cfg.schedule, power=cfg.poly_power,
                         warmup_iters=warmup, warmup_factor=cfg.warmup_factor)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


__all__ = ["build_optimizer", "build_scheduler", "lr_factor", "param_groups", "warmup_for"]
