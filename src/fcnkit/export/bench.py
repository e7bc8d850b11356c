"""Timing inference honestly: warm-up, fixed threads, many repeats, median and p90.

Speeds are quoted three ways: milliseconds per batch, images per second, and
achieved GFLOP/s against this machine's own matmul peak measured in the same run
(so "% of peak" says how much of the silicon a backend actually uses).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
from torch import Tensor

from ..io import atomic_write


@dataclass
class Timing:
    median_ms: float
    p90_ms: float
    batch: int
    samples_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def images_per_s(self) -> float:
        return 1000.0 * self.batch / self.median_ms

    @classmethod
    def of(cls, samples_ms: list[float], batch: int) -> "Timing":
        arr = np.asarray(samples_ms)
        return cls(float(np.median(arr)), float(np.percentile(arr, 90)), batch, samples_ms)


def time_callable(fn: Callable[[Tensor], object], x: Tensor, *, warmup: int = 2, repeats: int = 10) -> Timing:
    """Median and 90th percentile wall time of ``fn(x)`` after ``warmup`` untimed calls."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, not {repeats}")
    with torch.inference_mode():
        for _ in range(warmup):
            fn(x)
        samples = []
        for _ in range(repeats):
            if x.is_cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn(x)
            if x.is_cuda:
                torch.cuda.synchronize()
            samples.append(1000.0 * (time.perf_counter() - t0))
    return Timing.of(samples, x.shape[0])


def time_interleaved(fns: Mapping[str, Callable[[Tensor], object]], x: Tensor, *, warmup: int = 2,
                     repeats: int = 10, rounds: int = 5) -> dict[str, Timing]:
    """``time_callable`` for several paths side by side: ``repeats`` timed calls of each, spread
    over ``rounds`` rounds that visit every path in turn (the order rotated each round).

    On a shared machine the speed drifts over minutes; timed one after the other, the path
    measured in a slow minute loses. Interleaved, every path sees the same minutes."""
    names = list(fns)
    samples: dict[str, list[float]] = {n: [] for n in names}
    per_round = -(-repeats // max(1, rounds))
    with torch.inference_mode():
        for n in names:
            for _ in range(warmup):
                fns[n](x)
    for r in range(max(1, rounds)):
        for n in names[r % len(names):] + names[:r % len(names)]:
            samples[n] += time_callable(fns[n], x, warmup=0, repeats=per_round).samples_ms
    return {n: Timing.of(ms, x.shape[0]) for n, ms in samples.items()}


def matmul_peak_gflops(dtype: torch.dtype = torch.float32, *, n: int = 2048, seconds: float = 1.0) -> float:
    """Best achieved GFLOP/s of an n x n x n matmul in ``dtype`` over ~``seconds`` (2 n^3 FLOPs each)."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)  # warm-up: thread pool, kernel selection
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end or best == float("inf"):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def machine_peaks(threads: int | None = None, *, seconds: float = 1.0) -> dict[str, float]:
    """fp32 and bf16 matmul GFLOP/s on ``threads`` threads (int8 rows are quoted against bf16:
    PyTorch's CPU int8 matmul is not the VNNI path the runtimes use)."""
    if threads:
        torch.set_num_threads(threads)
    return {"fp32": matmul_peak_gflops(torch.float32, seconds=seconds),
            "bf16": matmul_peak_gflops(torch.bfloat16, seconds=seconds)}


def peak_for(peaks: dict[str, float], precision: str) -> float:
    return peaks["fp32"] if precision == "fp32" else peaks["bf16"]


@dataclass
class BenchRow:
    """One model's line in a speed table (and, when measured, its accuracy)."""

    name: str
    backend: str
    precision: str
    median_ms: float
    p90_ms: float
    images_per_s: float
    gflop: float | None = None  # per image
    peak_gflops: float | None = None
    size_mb: float | None = None
    mean_iu: float | None = None
    mean_iu_change: float | None = None  # points, vs the fp32 model
    agreement: float | None = None  # pixel argmax agreement with the fp32 model
    speedup: float | None = None  # vs the table's baseline

    @property
    def gflops(self) -> float | None:
        return None if self.gflop is None else self.gflop * self.images_per_s

    @property
    def pct_peak(self) -> float | None:
        if self.gflops is None or not self.peak_gflops:
            return None
        return 100.0 * self.gflops / self.peak_gflops

    def to_dict(self) -> dict:
        return {**asdict(self), "gflops": self.gflops, "pct_peak": self.pct_peak}


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)


def format_table(rows: list[BenchRow]) -> str:
    """A fixed-width text table; columns without any value are left out."""
    cols = [("model", lambda r: r.name, "<"), ("backend", lambda r: r.backend, "<"),
            ("prec", lambda r: r.precision, "<"),
            ("ms med", lambda r: _fmt(r.median_ms, ".1f"), ">"), ("ms p90", lambda r: _fmt(r.p90_ms, ".1f"), ">"),
            ("img/s", lambda r: _fmt(r.images_per_s, ".2f"), ">"),
            ("speedup", lambda r: _fmt(r.speedup, ".2f") + ("x" if r.speedup else ""), ">"),
            ("GFLOP/s", lambda r: _fmt(r.gflops, ".0f"), ">"), ("% peak", lambda r: _fmt(r.pct_peak, ".0f"), ">"),
            ("MB", lambda r: _fmt(r.size_mb, ".1f"), ">"), ("mIU", lambda r: _fmt(r.mean_iu, ".1f"), ">"),
            ("dmIU", lambda r: _fmt(r.mean_iu_change, "+.2f"), ">"),
            ("agree%", lambda r: _fmt(None if r.agreement is None else 100 * r.agreement, ".2f"), ">")]
    cells = [[str(get(r)) for _, get, _ in cols] for r in rows]
    keep = [i for i, (name, _, _) in enumerate(cols)
            if i < 6 or any(c[i] not in ("-", "-x") for c in cells)]
    widths = [max(len(cols[i][0]), *(len(c[i]) for c in cells)) if cells else len(cols[i][0]) for i in keep]
    line = lambda vals: "  ".join(format(v, f"{cols[i][2]}{w}") for v, i, w in zip(vals, keep, widths))  # noqa: E731
    out = [line([cols[i][0] for i in keep]), line(["-" * w for w in widths])]
    out += [line([c[i] for i in keep]) for c in cells]
    return "\n".join(out)


def plot_rows(rows: list[BenchRow], path: str | Path, *, title: str = "") -> Path:
    """Horizontal bars of median ms (p90 as a whisker), labelled with img/s and the mIU change."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    names = [f"{r.name}\n{r.backend} {r.precision}" for r in rows]
    med = np.array([r.median_ms for r in rows])
    err = np.array([max(0.0, r.p90_ms - r.median_ms) for r in rows])
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(rows) + 1.5))
    y = np.arange(len(rows))[::-1]
    ax.barh(y, med, xerr=[np.zeros_like(err), err], color="tab:blue", alpha=0.8, capsize=3)
    for yi, r in zip(y, rows):
        label = f" {r.median_ms:.1f} ms, {r.images_per_s:.2f} img/s"
        if r.mean_iu_change is not None:
            label += f", dmIU {r.mean_iu_change:+.2f}"
        ax.text(max(r.median_ms, r.p90_ms), yi, label, va="center", fontsize=8)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlabel("milliseconds per batch (median; whisker to p90)")
    ax.set_xlim(0, max(r.p90_ms for r in rows) * 1.7 if rows else 1)
    ax.set_title(title or "inference latency")
    fig.tight_layout()
    path = Path(path)
    try:  # the format from the suffix: .png, .svg or .pdf
        atomic_write(path, lambda f: fig.savefig(f, format=path.suffix.lower()[1:] or "png", dpi=110))
    finally:
        plt.close(fig)
    return path


__all__ = ["Timing", "time_callable", "matmul_peak_gflops", "machine_peaks", "peak_for", "BenchRow", "format_table",
           "plot_rows"]
