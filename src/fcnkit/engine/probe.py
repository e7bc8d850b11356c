"""Precision and memory layout chosen by a short timed probe of the model on the machine at hand.

Whether bf16 autocast or channels_last pays depends on the CPU, the model and whether it
trains: on an AMD Zen 4 core, bf16 depthwise convolutions run 15x slower than fp32 in
inference but a bf16 training step of the same EfficientNet-Lite FCN is 1.7x faster; on a
Xeon with AMX both are faster. No rule learnt on one machine holds on the next, so
``choose_run`` times a few forward steps of each candidate at the real input size, keeps
the fastest, caches the answer on disk per (CPU, torch version, model, input shape,
threads, task) and says in one line what it chose and why. Training is measured on the
run's own first steps (``StepTrial``: real steps of the real batch, so the trial costs only
the slower candidates' extra seconds); a step must be timed at the real batch: on one image,
fp32 NCHW ran level with the fastest layout for the raccoon detector while a batch of 8 ran
it 1.2-1.3x slower (``benchmarks/results/default_path.md``). An explicit ``amp`` /
``channels_last`` always wins; CUDA keeps its rule (bf16 where supported, else fp16,
channels_last).
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
from .runtime import autocast, cpu_has_fast_bf16, cpu_model, memory_format, resolve_amp

DTYPES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
SLOWER_DROPPED = 3.0  # a candidate whose warm-up step is this many times the best is not timed further
TRIAL_DROPPED = 1.3  # the same for a training run's trial, where every step it times is a step of the run
FIRST_STEP_ALLOWANCE = 1.2  # the trial's first warm-up also pays the run's first step (0.35-0.45 s more on
# CamVid's 2.5-2.8 s steps, a Xeon with AMX), so the first candidate is dropped only at 1.2x that limit


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
             "candidates": sorted([DTYPES[d], cl] for d, cl in candidates)}
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _worth_timing(warm: dict[tuple, float], limit: float, first_allowance: float = 1.0) -> list[tuple]:
    """The candidates (in warm-up order) whose warm-up step took at most ``limit`` times the
    best one's; the first one ``first_allowance`` times that, when its warm-up also paid for
    the run's first step. The others keep their warm-up as their time."""
    best = min(warm.values())
    return [c for i, (c, t) in enumerate(warm.items()) if t <= limit * best * (first_allowance if i == 0 else 1)]


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
        fmt = memory_format(cl)
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
    timed = _worth_timing(warm, SLOWER_DROPPED)
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
        model.to(memory_format=memory_format(choice.channels_last))
    return choice


def _choose(model: nn.Module, *, device: torch.device, shape: tuple[int, ...], train: bool, amp: str,
            channels_last: bool | None, repeats: int, use_cache: bool,
            say: Callable[[str], None] | None) -> RunChoice:
    choice = known_choice(model, device=device, shape=shape, train=train, amp=amp, channels_last=channels_last,
                          use_cache=use_cache)
    if choice is None:
        candidates = cpu_candidates(amp, channels_last)
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        was_training = model.training
        model.train(train)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # dropout, inputs
            x = torch.randn(*shape, device=device)
            seconds = _time_steps(model, x, candidates, train=train, repeats=repeats, device=device)
        model.load_state_dict(state)
        model.train(was_training)
        model.zero_grad(set_to_none=True)
        choice = decide(model, seconds, shape=shape, train=train, source="measured", use_cache=use_cache)
    model.to(memory_format=memory_format(choice.channels_last))
    if say is not None:
        say(f"precision and layout: {choice.label}: {choice.reason}")
    return choice


def known_choice(model: nn.Module, *, device: torch.device, shape: tuple[int, ...], train: bool, amp: str = "auto",
                 channels_last: bool | None = None, use_cache: bool = True) -> RunChoice | None:
    """The choice when nothing needs timing (CUDA's rule, an explicit setting, a CPU without
    bf16 arithmetic, or a measurement cached on this machine); None when it must be measured."""
    fixed = fixed_choice(device, amp, channels_last)
    if fixed is not None or not use_cache:
        return fixed
    return cached_choice(model, shape=shape, train=train, candidates=cpu_candidates(amp, channels_last))


def fixed_choice(device: torch.device, amp: str = "auto", channels_last: bool | None = None) -> RunChoice | None:
    """The choice that needs no measuring: CUDA's rule, an explicit setting, or the one
    candidate a CPU without bf16 arithmetic has for a given layout; None otherwise."""
    if device.type == "cuda" or (amp != "auto" and channels_last is not None):
        cl = True if channels_last is None else channels_last
        return RunChoice(resolve_amp(amp, device), cl, "as configured" if device.type != "cuda" or amp != "auto"
                         else "CUDA: bf16 where supported, else fp16")
    candidates = cpu_candidates(amp, channels_last)
    if len(candidates) == 1:
        (dtype, cl), = candidates
        return RunChoice(dtype, cl, "as configured" if amp != "auto" else "fp32: this CPU has no bf16 arithmetic")
    return None


def cached_choice(model: nn.Module, *, shape: tuple[int, ...], train: bool,
                  candidates: list[tuple[torch.dtype | None, bool]]) -> RunChoice | None:
    """The fastest of ``candidates`` as measured earlier on this machine, or None."""
    cached = _read_cache(probe_cache_path()).get(_cache_key(model, tuple(shape), train, candidates))
    if not cached:
        return None
    return decide(model, _times_from_rows(cached["times"]), shape=shape, train=train,
                  source="measured earlier on this machine", use_cache=False)


def decide(model: nn.Module, seconds: dict[tuple, float], *, shape: tuple[int, ...], train: bool, source: str,
           use_cache: bool = True) -> RunChoice:
    """The fastest of the measured ``seconds`` ((dtype, channels_last) -> s per step), with the
    reason in one line; with ``use_cache`` the times are kept for the next run on this machine."""
    if use_cache:
        path = probe_cache_path()
        records = _read_cache(path)
        records[_cache_key(model, tuple(shape), train, list(seconds))] = {
            "cpu": cpu_model(), "torch": torch.__version__, "shape": list(shape), "train": train,
            "model": _model_key(model)[:200], "times": _times_rows(seconds)}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(records, indent=1) + "\n")
        except OSError:
            pass  # an unwritable cache only costs a probe next time
    (dtype, cl) = min(seconds, key=seconds.get)
    what = "training step" if train else "forward"
    ranked = sorted(seconds.items(), key=lambda kv: kv[1])
    others = ", ".join(f"{RunChoice(d, c, '').label} {_fmt(t)}" for (d, c), t in ranked if (d, c) != (dtype, cl))
    vs = f" vs {others}" if others else ""
    where = f"{cpu_model()}, {torch.get_num_threads()} threads, input {'x'.join(map(str, shape))}"
    return RunChoice(dtype, cl, f"{_fmt(seconds[(dtype, cl)])} per {what}{vs}, {source} ({where})")


class StepTrial:
    """Precision and layout measured on a training run's own first steps.

    Each candidate trains one step to warm up (oneDNN builds its kernels for that precision
    and layout) and then one timed step; a candidate whose warm-up took over ``TRIAL_DROPPED``
    times the best skips its timed step (the first one, whose warm-up also pays the run's first
    step, over ``FIRST_STEP_ALLOWANCE`` times that). The steps are real training steps, so the trial
    costs only what the slower candidates' steps took beyond the chosen one's (``excess``),
    not a probe's dozen extra steps, and it times the real step: the recipe's batch, loss,
    optimiser and weight average. The trainer asks ``candidate`` before each step and
    gives the step's seconds to ``record``; ``done`` says when ``result`` is ready.
    A trial resumed in a new process (``resumed``) times some steps cold, so its answer
    serves the run but is not cached for the next one.
    """

    def __init__(self, candidates: list[tuple[torch.dtype | None, bool]], shape: tuple[int, ...]) -> None:
        if len(candidates) < 2:
            raise ValueError(f"a trial needs two or more candidates, got {candidates}")
        self.shape = tuple(shape)  # the batch every step has (the answer is cached for it)
        self.plan = list(candidates)  # warm-up round first; the timed round is added once it is over
        self.warm: dict[tuple, float] = {}
        self.seconds: dict[tuple, float] = {}
        self.steps: list[float] = []
        self.resumed = False

    @property
    def done(self) -> bool:
        return len(self.steps) == len(self.plan) and len(self.warm) == len(set(self.plan))

    @property
    def candidate(self) -> RunChoice:
        dtype, cl = self.plan[len(self.steps)]
        return RunChoice(dtype, cl, "on trial")

    def record(self, seconds: float) -> None:
        c = self.plan[len(self.steps)]
        self.steps.append(seconds)
        if c not in self.warm:
            self.warm[c] = seconds
            if len(self.warm) == len(self.plan):  # warm-up round over: rank 0's times decide every rank's plan
                self.warm = D.gather_objects(self.warm)[0]
                timed = _worth_timing(self.warm, TRIAL_DROPPED, FIRST_STEP_ALLOWANCE)
                self.seconds = {c: t for c, t in self.warm.items() if c not in timed}  # dropped: warm-up as evidence
                self.plan += timed
        else:
            self.seconds[c] = seconds

    def result(self, model: nn.Module, *, use_cache: bool = True) -> RunChoice:
        """The fastest candidate (rank 0's times on every rank); cached like a probe's answer when
        the trial is complete and ran in one process. Before it is complete (a run shorter than
        its trial) the candidates without a timed step count with their warm-up."""
        self.seconds = D.gather_objects(self.seconds)[0]  # (the warm-ups are rank 0's already)
        source = f"measured on the run's first {len(self.steps)} steps ({_fmt(self.excess)} more than a run that " \
                 f"knew the answer)"
        if not self.done:
            source += "; the run ended before the trial did, so it is not cached"
        elif self.resumed:
            source += "; resumed mid-trial, so it is not cached"
        return decide(model, self.times, shape=self.shape, train=True, source=source,
                      use_cache=use_cache and self.done and not self.resumed and D.current().is_main)

    @property
    def times(self) -> dict[tuple, float]:
        """Seconds per step of each candidate measured so far: its timed step, else its warm-up."""
        return {**self.warm, **self.seconds}

    @property
    def excess(self) -> float:
        """Seconds the trial's steps took beyond as many steps of a run that knew the answer
        (its first step a warm-up of the chosen path, the rest at its timed pace)."""
        times = self.times
        best = min(times, key=times.get)
        return sum(self.steps) - self.warm[best] - (len(self.steps) - 1) * times[best]

    def state(self) -> dict:
        """Plain data for a checkpoint: a run resumed mid-trial goes on with the same steps."""
        return {"shape": list(self.shape), "plan": [[DTYPES[d], cl] for d, cl in self.plan],
                "warm": _times_rows(self.warm), "seconds": _times_rows(self.seconds), "steps": list(self.steps),
                "resumed": self.resumed}

    @classmethod
    def from_state(cls, state: dict) -> StepTrial:
        plan = [(dtype_named(n), cl) for n, cl in state["plan"]]
        trial = cls(plan[:len(set(plan))], state["shape"])  # the warm-up round: every candidate once
        trial.plan = plan
        trial.warm, trial.seconds = _times_from_rows(state["warm"]), _times_from_rows(state["seconds"])
        trial.steps = list(state["steps"])
        trial.resumed = bool(state.get("resumed"))
        return trial


def cpu_candidates(amp: str = "auto", channels_last: bool | None = None) -> list[tuple[torch.dtype | None, bool]]:
    """The (autocast dtype, channels_last) pairs a CPU probe chooses among: bf16 besides fp32
    only with ``amp`` auto on a CPU with bf16 arithmetic, both layouts unless one is given."""
    dtypes = [resolve_amp(amp, torch.device("cpu"))] if amp != "auto" else (
        [None, torch.bfloat16] if cpu_has_fast_bf16() else [None])
    layouts = [channels_last] if channels_last is not None else [True, False]
    return [(d, cl) for d in dtypes for cl in layouts]


def dtype_named(name: str) -> torch.dtype | None:
    """The autocast dtype a label names ("fp32" is None: no autocast)."""
    return next(d for d, n in DTYPES.items() if n == name)


def _times_rows(times: dict[tuple, float]) -> list[list]:
    """(dtype, channels_last) -> seconds as JSON rows [name, channels_last, seconds] (cache, checkpoint)."""
    return [[DTYPES[d], cl, t] for (d, cl), t in times.items()]


def _times_from_rows(rows: list[list]) -> dict[tuple, float]:
    return {(dtype_named(name), cl): t for name, cl, t in rows}


def _fmt(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


__all__ = ["DTYPES", "RunChoice", "StepTrial", "cached_choice", "choose_run", "cpu_candidates", "decide",
           "dtype_named", "fixed_choice", "known_choice", "probe_cache_path"]
