"""``fcnkit optimize --backend auto --precision auto``: every variant this machine can run,
measured, and the fastest one within the accuracy bound written, with a report of all.

Which backend and precision is fastest depends on the CPU (bf16 is 15x slower than fp32
for depthwise convolutions on one of our machines and faster on another; int8 pays for
dense convolutions more than for depthwise ones), so nothing is assumed: each candidate
(PyTorch fp32 / bf16, ONNX Runtime fp32 / int8, OpenVINO fp32 / bf16 / int8, where
installed and possible; for a model with a large transposed-conv upsampling, each also
with it as conv + depth-to-space, ``fcnkit.models.subpixel``) is built, scored against the
fp32 model on the validation images, timed at their size, and either kept (within ``max_drop`` mean IU points) or dropped with
the reason. Every candidate is timed up to the class map, as predict and serve use it.
With ``output="auto"`` the fastest kept exported file is then built once more with the
argmax inside its graph (``--output labels``) and all are timed side by side again: the
twin is written only if it saves at least ``LABELS_MIN_SAVING`` (a file of classes gives
no scores, so no TTA or temporal filter; that costs something, so it must pay). The chosen
one is written; ``report.md``, ``candidates.json`` and ``candidates.png`` beside it say
what each candidate measured.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..engine.samples import load_samples
from ..engine.runtime import cpu_has_fast_bf16, cpu_model
from ..extras import installed
from ..io import atomic_write_text, check_output_dir, next_run_dir
from ..models.spec import spec_of
from ..models.subpixel import rewritable_upsamplings
from ..profile import count_flops
from .bench import BenchRow, format_table, plot_rows, time_interleaved  # noqa: F401 (BenchRow: Candidate.row)
from .optimize import (BUILDERS, PRECISIONS, BudgetExceeded, Reference, backend_modules, build_variant, check_budget,
                       default_output, load_segmenter, measure, staging_dir, to_classes, with_timing, write_variant)

LABELS_MIN_SAVING = 0.05  # the share of the class-scores file's time a labels twin must save to be chosen
CANDIDATES = tuple((b, p) for b, builder in BUILDERS.items() for p in PRECISIONS if p not in builder.refuses)


@dataclass
class Candidate:
    backend: str
    precision: str
    status: str  # "chosen", "kept" (within the bound, slower), "dropped" (with ``reason``), "skipped"
    reason: str = ""
    row: BenchRow | None = None
    subpixel: bool = False  # its large upsampling as conv + depth-to-space
    output: str = "logits"  # "labels": the argmax inside the graph

    @property
    def name(self) -> str:
        return (f"{self.backend}-{self.precision}" + ("-subpixel" if self.subpixel else "")
                + ("-labels" if self.output == "labels" else ""))

    def to_dict(self) -> dict:
        return {"backend": self.backend, "precision": self.precision, "subpixel": self.subpixel,
                "output": self.output, "status": self.status, "reason": self.reason,
                **({"measured": self.row.to_dict()} if self.row else {})}


@dataclass
class AutoResult:
    path: Path  # the written variant
    chosen: Candidate
    candidates: list[Candidate]
    reference_mean_iu: float
    report: Path


def plan_candidates(backend: str = "auto", precision: str = "auto", *, calib: bool) -> list[Candidate]:
    """The candidates ``backend`` / ``precision`` (each a name or "auto") allow, the ones this
    machine cannot build already marked "skipped" with the reason."""
    out = []
    for b, p in CANDIDATES:
        if backend not in ("auto", b) or precision not in ("auto", p):
            continue
        missing = [m for m in backend_modules(b, p) if not installed(m)]
        if missing:
            out.append(Candidate(b, p, "skipped", f"{', '.join(missing)} not installed (pip install 'fcnkit[export]')"))
        elif p == "int8" and not calib:
            out.append(Candidate(b, p, "skipped", "int8 needs calibration images (--calib)"))
        elif p == "bf16" and not torch.cuda.is_available() and not cpu_has_fast_bf16():
            out.append(Candidate(b, p, "skipped", "this CPU has no bf16 arithmetic (AVX512-BF16 / AMX)"))
        else:
            out.append(Candidate(b, p, "planned"))
    if not out:
        raise ValueError(f"no candidate for --backend {backend} --precision {precision} (backends {tuple(BUILDERS)}, "
                         f"precisions {PRECISIONS}; ONNX Runtime has no bf16, PyTorch no int8)")
    return out


def optimize_auto(checkpoint: str | Path, *, val: str, val_split: str = "val", calib: str | None = None,
                  calib_split: str = "train", calib_limit: int = 32, limit: int | None = None, max_drop: float = 1.0,
                  backend: str = "auto", precision: str = "auto", threads: int | None = None, warmup: int = 2,
                  repeats: int = 10, out_dir: str | Path | None = None, output: str = "auto",
                  say: Callable[[str], None] = print) -> AutoResult:
    """Build, score and time every candidate (``plan_candidates``), write the fastest one whose
    mean IU is at most ``max_drop`` points below the fp32 model's into ``out_dir`` (default
    ``runs/optimize/N``; its file name ends as its backend's files do), and a report of all.
    ``output``: "logits" (class scores), "labels" (the exported candidates give classes; torch
    candidates are skipped) or "auto" (class scores, or the chosen file's labels twin where
    it saves ``LABELS_MIN_SAVING``)."""
    if output not in ("logits", "labels", "auto"):
        raise ValueError(f"output must be logits, labels or auto, not {output!r}")
    candidates = plan_candidates(backend, precision, calib=calib is not None)
    for c in candidates:
        if output == "labels" and c.status == "planned":
            if c.backend == "torch":
                c.status, c.reason = "skipped", "--output labels: the torch backend runs the model itself (class scores)"
            else:
                c.output = "labels"
    out_dir = check_output_dir(out_dir if out_dir is not None else next_run_dir("optimize"), what="report folder")
    if threads:
        torch.set_num_threads(threads)
    model = load_segmenter(checkpoint)
    if rewritable_upsamplings(model):  # each planned candidate also with the rewrite: measured, not assumed
        candidates += [dataclasses.replace(c, subpixel=True) for c in candidates if c.status == "planned"]
    prep = spec_of(model).preprocessing
    say(f"loading {val} ({val_split}) ...")
    samples = load_samples(val, val_split, prep, limit=limit)
    calibration = [s.image for s in load_samples(calib, calib_split, prep, limit=calib_limit)] if calib else None
    reference = Reference.of(model, samples)
    say(f"fp32 model: mean IU {reference.mean_iu:.1f} on {len(samples)} {val_split} images; "
        f"{sum(c.status == 'planned' for c in candidates)} candidates")
    flops = None
    with staging_dir(out_dir) as work:
        variants, onnx_cache = {}, {}

        def build(c: Candidate) -> None:
            """Build, score and bound-check ``c``: "kept" or "dropped" with the reason."""
            nonlocal flops
            try:
                variant = build_variant(model, backend=c.backend, precision=c.precision,
                                        workdir=Path(work) / c.name, calibration=calibration, threads=threads,
                                        onnx_cache=onnx_cache, output=c.output, subpixel=c.subpixel)
                if flops is None:
                    flops, _ = count_flops(variant.torch_model, samples[0].image)
                c.row = measure(variant, samples, reference, flops=flops, timed=False)
                variants[c.name] = variant
                check_budget(c.row, max_drop)
                c.status = "kept"
            except BudgetExceeded:
                c.status, c.reason = "dropped", (f"mean IU {c.row.mean_iu_change:+.2f} points, beyond --max-drop "
                                                 f"{max_drop:g}")
            except (RuntimeError, ValueError, OSError) as e:  # a converter or runtime that fails here
                c.status, c.reason = "dropped", f"failed: {str(e).splitlines()[0][:200]}"
            say(f"  {c.name}: {c.status}" + (f", mean IU {c.row.mean_iu_change:+.2f}" if c.row else "")
                + (f" ({c.reason})" if c.reason else ""))

        def time_side_by_side(group: list[Candidate]) -> None:
            timings = time_interleaved({c.name: to_classes(variants[c.name].runtime) for c in group},
                                       samples[0].image, warmup=warmup, repeats=repeats)
            for c in group:
                c.row = with_timing(c.row, timings[c.name])
                say(f"  {c.name}: {c.row.median_ms:.1f} ms")

        for c in candidates:
            if c.status == "planned":
                build(c)
            else:
                say(f"  {c.name}: skipped ({c.reason})")
        timed = [c for c in candidates if c.row]  # within the bound or not: the report gives every latency
        say(f"timing {len(timed)} candidates side by side ({repeats} runs each, interleaved, up to the class map) ...")
        time_side_by_side(timed)
        kept = [c for c in candidates if c.status == "kept"]
        if not kept:
            raise BudgetExceeded(f"no candidate kept mean IU within --max-drop {max_drop:g}; nothing written")
        chosen = min(kept, key=lambda c: c.row.median_ms)
        if output == "auto" and BUILDERS[chosen.backend].labels:
            chosen = _try_labels_twin(chosen, candidates, build, time_side_by_side, say)
        faster = [c for c in candidates if c.status == "dropped" and c.row and c.row.median_ms < chosen.row.median_ms]
        if faster:
            fastest = min(faster, key=lambda c: c.row.median_ms)
            chosen.reason = "; ".join(filter(None, [chosen.reason, f"fastest within the bound ({fastest.name} is "
                                                                   f"faster but was dropped)"]))
        chosen.status = "chosen"
        variant = variants[chosen.name]
        path = default_output(checkpoint, variant, out_dir)
        results = {k: v for k, v in chosen.row.to_dict().items() if k not in ("name", "backend", "precision")}
        results.update(val=f"{val} ({val_split}, {len(samples)} images)", fp32_mean_iu=reference.mean_iu,
                       chosen_from=[c.name for c in candidates if c.row])
        write_variant(variant, path, results)
    report = write_choice_report(path.parent, checkpoint, candidates, reference.mean_iu, len(samples), max_drop, path)
    return AutoResult(path, chosen, candidates, reference.mean_iu, report)


def _try_labels_twin(chosen: Candidate, candidates: list[Candidate], build: Callable[[Candidate], None],
                     time_side_by_side: Callable[[list[Candidate]], None], say: Callable[[str], None]) -> Candidate:
    """``chosen`` built again with the argmax inside; every measured candidate and the twin
    timed side by side once more (one run behind every figure of the report); the twin if
    it is kept and saves ``LABELS_MIN_SAVING`` of the then fastest kept file's time, else
    that file."""
    twin = dataclasses.replace(chosen, status="planned", reason="", row=None, output="labels")
    candidates.append(twin)
    say(f"the argmax inside {chosen.name}'s graph (--output labels) ...")
    build(twin)
    if twin.status != "kept":
        return chosen
    timed = [c for c in candidates if c.row]
    say(f"timing {len(timed)} candidates again, with the labels twin ...")
    time_side_by_side(timed)
    best = min((c for c in candidates if c.status == "kept" and c is not twin), key=lambda c: c.row.median_ms)
    saving = 1 - twin.row.median_ms / best.row.median_ms
    pair = (f"{twin.row.median_ms:.1f} vs {best.row.median_ms:.1f} ms for {best.name} "
            f"({100 * abs(saving):.0f}% {'less' if saving >= 0 else 'more'})")
    if saving >= LABELS_MIN_SAVING:
        twin.reason = f"the argmax inside pays: {pair}"
        return twin
    twin.reason = (f"saves under {100 * LABELS_MIN_SAVING:.0f}%: {pair}; class scores kept (probabilities, TTA, "
                   f"temporal filter)")
    return best


def write_choice_report(folder: Path, checkpoint: str | Path, candidates: Sequence[Candidate], fp32_mean_iu: float,
                 images: int, max_drop: float, written: Path) -> Path:
    """``report.md`` (table), ``candidates.json`` and ``candidates.png`` (latency bars) in ``folder``."""
    measured = [c for c in candidates if c.row]
    lines = [f"# fcnkit optimize --backend auto: {Path(str(checkpoint)).name}", "",
             f"CPU: {cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}. fp32 model mean IU "
             f"{fp32_mean_iu:.2f} on {images} validation images; bound: at most {max_drop:g} points lower. "
             f"Written: `{written.name}`.", "",
             "| candidate | status | ms / image (median) | images/s | size MB | mean IU change | pixels as fp32 | why |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in sorted(candidates, key=lambda c: (c.row is None, c.row.median_ms if c.row else 0)):
        r = c.row
        cells = ([f"{r.median_ms:.1f}", f"{r.images_per_s:.1f}", f"{r.size_mb:.1f}", f"{r.mean_iu_change:+.2f}",
                  f"{100 * r.agreement:.2f}%"] if r else ["", "", "", "", ""])
        status = f"**{c.status}**" if c.status == "chosen" else c.status
        lines.append(f"| {c.name} | {status} | " + " | ".join(cells) + f" | {c.reason} |")
    lines += ["", "![candidates](candidates.png)", ""]
    report = folder / "report.md"
    atomic_write_text(report, "\n".join(lines))
    atomic_write_text(folder / "candidates.json", json.dumps({
        "checkpoint": str(checkpoint), "cpu": cpu_model(), "threads": torch.get_num_threads(),
        "fp32_mean_iu": fp32_mean_iu, "max_drop": max_drop, "written": str(written),
        "candidates": [c.to_dict() for c in candidates]}, indent=1) + "\n")
    if measured:
        rows = [dataclasses.replace(c.row, name=f"{c.name} ({c.status})") for c in measured]
        plot_rows(rows, folder / "candidates.png", title=f"optimize --backend auto ({cpu_model()})")
    return report


def format_candidates(candidates: Sequence[Candidate]) -> str:
    """The measured candidates as a text table, then the rest with their reasons."""
    rows = [dataclasses.replace(c.row, name=f"{c.name} ({c.status})") for c in candidates if c.row]
    text = format_table(rows) if rows else ""
    rest = [f"{c.name}: {c.status} ({c.reason})" for c in candidates if not c.row]
    return "\n".join([text, *rest]).strip()


__all__ = ["AutoResult", "CANDIDATES", "Candidate", "format_candidates", "optimize_auto", "plan_candidates",
           "write_choice_report"]
