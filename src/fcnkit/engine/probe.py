"""Precision and memory layout chosen by a short timed probe of the model on the machine at hand.

Whether bf16 autocast or channels_last pays depends on the CPU, the model and whether it
trains: on an AMD Zen 4 core, bf16 depthwise convolutions run 15x slower than fp32 in
inference but a bf16 training step of the same EfficientNet-Lite FCN is 1.7x faster; on a
Xeon with AMX both are faster. No rule learnt on one machine holds on the next, so
``choose_run`` times a few steps of each candidate (forward only, or forward + backward
for training) at the real input size, keeps the fastest, caches the answer on disk per
(CPU, torch version, model, input shape, threads, task) and says in one line what it
chose and why. Training steps are timed at the real batch: on one image, fp32 NCHW ran
level with the fastest layout for the raccoon detector while a batch of 8 ran it 1.2-1.3x
slower (``benchmarks/results/default_path.md``). An explicit ``amp`` / ``channels_last``
always wins; CUDA keeps its rule (bf16 where supported, else fp16, channels_last).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from ..io import atomic_write_text, cache_root
from ..models.spec import spec_of
from . import distributed as D
from .runtime import autocast, cpu_has_fast_bf16, cpu_model, resolve_amp

DTYPES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
SLOWER_DROPPED = 3.0  # a candidate whose warm-up step is this many times the best is not timed further


@dataclass(frozen=True)
class RunChoice:
    """How to run: the autocast dtype (None = fp32), the memory layout, and why."""

    amp_dtype: torch.dtype | None
    channels_last: bool
    reason: str

    @property
    def label(self) -> str:
        return f"{DTYPES[self.amp_dtype]} {'channels_last' if self.channels_last else 'NCHW'}"


def probe_cache_path() -> Path:
    """Where measured choices are kept (beside the weights cache; ``FCNKIT_CACHE`` moves both)."""
    return cache_root() / "probe.json"


def _model_key(model: nn.Module) -> str:
    """What identifies the architecture: the builder config of its spec (name included)."""
    return json.dumps(spec_of(model).builder_config, sort_keys=True)


def _cache_key(model: nn.Module, shape: tuple[int, ...], train: bool, candidates: list[tuple]) -> str:
    parts = {"cpu": cpu_model(), "torch": torch.__version__, "threads": torch.get_num_threads(),
             "model": _model_key(model), "shape": list(shape), "train": train,
             "candidates": [[DTYPES[d], cl] for d, cl in candidates]}
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # missing or damaged: measure again


def _loss_of(outputs: dict[str, Tensor]) -> Tensor:
    """A scalar that reaches every output (the probe times backward, not a real loss)."""
    return sum(p.float().mean() for p in outputs.values())


def _time_steps(model: nn.Module, x: Tensor, candidates: list[tuple], *, train: bool, repeats: int,
                device: torch.device) -> dict[tuple, float]:
    """Seconds per step of each candidate: one warm-up step each, then ``repeats`` rounds
    round-robin (a noisy neighbour slows every candidate alike); the fastest step counts."""

    def step(dtype: torch.dtype | None, cl: bool) -> float:
        fmt = torch.channels_last if cl else torch.contiguous_format
        model.to(memory_format=fmt)
        xi = x.contiguous(memory_format=fmt)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        if train:
            with autocast(device, dtype):
                out = model(xi)
            _loss_of(out).backward()
            model.zero_grad(set_to_none=True)
        else:
            with torch.inference_mode(), autocast(device, dtype):
                model(xi)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    warm = {c: step(*c) for c in candidates}
    best_warm = min(warm.values())
    timed = [c for c in candidates if warm[c] <= SLOWER_DROPPED * best_warm]
    best = dict(warm)  # the dropped keep their warm-up time as evidence
    for _ in range(repeats):
        for c in timed:
            best[c] = min(best[c], step(*c))
    return best


def choose_run(model: nn.Module, *, device: torch.device, shape: tuple[int, ...], train: bool,
               amp: str = "auto", channels_last: bool | None = None, repeats: int = 2, use_cache: bool = True,
               say: Callable[[str], None] | None = print) -> RunChoice:
    """The fastest (autocast dtype, memory layout) for ``model`` on ``device`` at input ``shape``
    (N, 3, H, W): measured by a probe on CPU when more than one candidate is allowed.

    ``amp`` is auto|bf16|fp16|off; ``channels_last`` None means "measure". bf16 is a candidate
    only on CPUs with bf16 arithmetic (AVX512-BF16 or AMX). The model's weights, buffers
    (batch-norm statistics), gradients, memory layout and the RNG are as before the probe;
    the model is left in the chosen layout. Under ``torchrun`` rank 0 measures (alone, so
    the ranks do not slow each other's probe) and every rank runs its choice.
    """
    dist = D.current()
    choice = None
    if dist.is_main:
        choice = _choose(model, device=device, shape=shape, train=train, amp=amp, channels_last=channels_last,
                         repeats=repeats, use_cache=use_cache, say=say)
    if dist.enabled:
        choice = D.gather_objects(choice)[0]
        model.to(memory_format=torch.channels_last if choice.channels_last else torch.contiguous_format)
    return choice


def _choose(model: nn.Module, *, device: torch.device, shape: tuple[int, ...], train: bool, amp: str,
            channels_last: bool | None, repeats: int, use_cache: bool,
            say: Callable[[str], None] | None) -> RunChoice:
    if device.type == "cuda" or (amp != "auto" and channels_last is not None):
        dtype = resolve_amp(amp, device)
        cl = True if channels_last is None else channels_last
        choice = RunChoice(dtype, cl, "as configured" if device.type != "cuda" or amp != "auto"
                           else "CUDA: bf16 where supported, else fp16")
        model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
        return choice
    candidates = cpu_candidates(amp, channels_last)
    if len(candidates) == 1:
        (dtype, cl), = candidates
        model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
        why = "as configured" if amp != "auto" else "fp32: this CPU has no bf16 arithmetic"
        return RunChoice(dtype, cl, why)

    path = probe_cache_path()
    key = _cache_key(model, tuple(shape), train, candidates)
    cached = _read_cache(path).get(key) if use_cache else None
    if cached:
        seconds = {(next(d for d, n in DTYPES.items() if n == rec[0]), rec[1]): rec[2] for rec in cached["times"]}
        source = "measured earlier on this machine"
    else:
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        was_training = model.training
        model.train(train)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # dropout, inputs
            x = torch.randn(*shape, device=device)
            seconds = _time_steps(model, x, candidates, train=train, repeats=repeats, device=device)
        model.load_state_dict(state)
        model.train(was_training)
        model.zero_grad(set_to_none=True)
        source = "measured"
        if use_cache:
            records = _read_cache(path)
            records[key] = {"cpu": cpu_model(), "torch": torch.__version__, "shape": list(shape), "train": train,
                            "model": _model_key(model)[:200],
                            "times": [[DTYPES[d], cl, t] for (d, cl), t in seconds.items()]}
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(path, json.dumps(records, indent=1) + "\n")
            except OSError:
                pass  # an unwritable cache only costs a probe next time
    (dtype, cl) = min(seconds, key=seconds.get)
    model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
    what = "training step" if train else "forward"
    others = ", ".join(f"{RunChoice(d, c, '').label} {_fmt(t)}" for (d, c), t in sorted(seconds.items(),
                                                                                         key=lambda kv: kv[1])
                       if (d, c) != (dtype, cl))
    choice = RunChoice(dtype, cl, f"{_fmt(seconds[(dtype, cl)])} per {what} vs {others}, {source} "
                                  f"({cpu_model()}, {torch.get_num_threads()} threads, input {'x'.join(map(str, shape))})")
    if say is not None:
        say(f"precision and layout: {choice.label}: {choice.reason}")
    return choice


def cpu_candidates(amp: str = "auto", channels_last: bool | None = None) -> list[tuple[torch.dtype | None, bool]]:
    """The (autocast dtype, channels_last) pairs a CPU probe chooses among: bf16 besides fp32
    only with ``amp`` auto on a CPU with bf16 arithmetic, both layouts unless one is given."""
    dtypes = [resolve_amp(amp, torch.device("cpu"))] if amp != "auto" else (
        [None, torch.bfloat16] if cpu_has_fast_bf16() else [None])
    layouts = [channels_last] if channels_last is not None else [True, False]
    return [(d, cl) for d in dtypes for cl in layouts]


def _fmt(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


__all__ = ["RunChoice", "choose_run", "cpu_candidates", "probe_cache_path"]
