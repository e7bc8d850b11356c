"""From predictions to files: output names, collisions, probability files and writers.

``predict_to_folder`` is what ``fcnkit predict`` does, as one call: per image
``<name>`` under ``out`` (folder inputs keep their sub-folders) ``<name>.mask.png``
(class indices with the palette), ``<name>.overlay.jpg``, ``<name>.probs.npy``
(float16 (C, H, W), with ``probs=True``) and ``<name>.detections.json`` for detection
models; per video ``<name>.overlay.mp4``, ``<name>.frames/`` (a mask PNG per frame, named
by index and time, and with ``probs`` its probabilities) and ``<name>.frames.jsonl`` (a
line per frame: time, class shares, pixels changed, detections). Existing outputs are skipped unless
``overwrite``; unreadable inputs are reported, never fatal.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..engine import distributed as D
from ..extras import require
from ..heads import BOXES, SEG
from ..io import atomic_write, check_output_dir, discard_temp, next_run_dir, publish_temp, temp_beside
from .images import InputFile, collect_inputs
from .postprocess import save_image, save_mask
from .predictor import Failure, Prediction, Predictor
from ..data.yolo import yolo_lines
from .stream import is_live_source, predict_stream, source_name
from .temporal import TemporalFilter
from .video import predict_video


def safe_name(relative: Path) -> Path:
    """A relative output path that stays inside ``--out``: each part keeps letters, digits
    and ``._-+`` (anything else -> ``_``), loses leading dots (no ``..``, no hidden
    files); absolute anchors are dropped."""
    parts = []
    for part in Path(relative).parts:
        if part in ("/", "\\") or Path(part).anchor:
            continue
        clean = "".join(c if c.isalnum() or c in "._-+" else "_" for c in part).lstrip(".")
        parts.append(clean or "_")
    return Path(*parts) if parts else Path("_")


@dataclass
class OutputTarget:
    """One input and the output stem it writes to (``out / stem`` + suffixes)."""

    input: InputFile
    stem: Path


def plan_jobs(inputs: list[InputFile], out: Path) -> tuple[list[OutputTarget], list[Failure]]:
    """Output stems: the relative path without its suffix, or with it where two inputs
    would otherwise share a stem (``a.png`` and ``a.jpg``); refuse any path outside ``out``."""
    stems = [safe_name(f.relative.with_suffix("")) for f in inputs]
    taken: dict[Path, int] = {}
    for s in stems:
        taken[s] = taken.get(s, 0) + 1
    jobs, failures = [], []
    root = out.resolve()
    used: dict[Path, Path] = {}
    for f, stem in zip(inputs, stems):
        if taken[stem] > 1:
            stem = safe_name(f.relative)
        target = (out / stem).resolve()
        if not target.is_relative_to(root):  # e.g. a symlinked sub-folder of --out
            failures.append(Failure(f.path, f"output {out / stem} would be outside {out}"))
        elif target in used:  # e.g. 'a b.png' and 'a_b.png' sanitise alike
            failures.append(Failure(f.path, f"output name {stem} is already used by {used[target]}"))
        else:
            used[target] = f.path
            jobs.append(OutputTarget(f, stem))
    return jobs, failures


def output_paths(job: OutputTarget, out: Path, predictor: Predictor, probs: bool, save_txt: bool = False) -> dict[str, Path]:
    """What ``job`` writes: ``overlay`` (and ``mask``, ``probs``, ``detections``, ``txt``) or ``video``."""
    base = out / job.stem
    if job.input.is_video:
        return video_paths(base, predictor)
    paths = {"overlay": _beside(base, ".overlay.jpg")}
    if SEG in predictor.spec.heads:
        paths["mask"] = _beside(base, ".mask.png")
        if probs:
            paths["probs"] = _beside(base, ".probs.npy")
    if BOXES in predictor.spec.heads:
        paths["detections"] = _beside(base, ".detections.json")
        if save_txt:  # YOLO format: label cx cy w h score, fractions of the image
            paths["txt"] = _beside(base, ".txt")
    return paths


def _beside(base: Path, suffix: str) -> Path:
    """``base`` + ``suffix`` (appended: stems may contain dots)."""
    return base.with_name(base.name + suffix)


def video_paths(base: Path, predictor: Predictor) -> dict[str, Path]:
    """A video's or live source's outputs: the overlay, and per frame a JSON line and (models
    with masks) a mask PNG (+ probabilities) in a folder."""
    paths = {"video": _beside(base, ".overlay.mp4"), "frames_json": _beside(base, ".frames.jsonl")}
    if SEG in predictor.spec.heads:
        paths["frames"] = _beside(base, ".frames")
    return paths


class ProbabilityFiles:
    """Probability maps written straight to disk: each image's (C, H, W) float16 buffer is
    a ``.npy`` memory map in a temp file next to its output, renamed into place once
    complete -- a 20000^2 image with 21 classes never needs its 16.8 GB in RAM."""

    def __init__(self, targets: dict[Path, Path]) -> None:
        self.targets = targets  # input path -> final .probs.npy
        self.temps: dict[Path, Path] = {}

    def __call__(self, path: Path | None, shape: tuple[int, int, int]) -> np.ndarray:
        tmp = self.temps[path] = temp_beside(self.targets[path])
        return np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)

    def commit(self, path: Path, array: np.ndarray) -> None:
        array.flush()
        with open(self.temps[path], "rb+") as f:
            os.fsync(f.fileno())
        publish_temp(self.temps.pop(path), self.targets[path])

    def discard(self, path: Path) -> None:
        tmp = self.temps.pop(path, None)
        if tmp is not None:
            discard_temp(tmp)


def write_outputs(result: Prediction, paths: dict[str, Path], alpha: float, probs: ProbabilityFiles) -> None:
    """Every file of one prediction, each atomically."""
    if result.mask is not None:
        save_mask(result.mask, result.palette, paths["mask"])
    if result.probabilities is not None:
        probs.commit(result.path, result.probabilities)
    if "detections" in paths:
        text = json.dumps({"image": str(result.path), "size": list(result.image.shape[:2]),
                           "classes": result.classes, "detections": result.detections or []}, indent=1)
        atomic_write(paths["detections"], lambda f: f.write(text.encode()))
    if "txt" in paths:
        lines = yolo_lines(result.detections or [], result.image.shape[:2])
        atomic_write(paths["txt"], lambda f: f.write(lines.encode()))
    save_image(result.overlay(alpha), paths["overlay"])


@dataclass
class FolderResult:
    """What ``predict_to_folder`` did: inputs written, and those skipped with the reason."""

    out: Path
    done: int = 0
    failures: list[Failure] = field(default_factory=list)
    existing: int = 0  # inputs whose outputs were all there already (a rerun skips them)
    processes: int = 1  # ranks that shared the work (torchrun)

    @property
    def total(self) -> int:
        return self.done + self.existing + len(self.failures)


def predict_to_folder(predictor: Predictor, inputs: Sequence[str | Path], out: str | Path | None = None, *,
                      probs: bool = False,
                      overwrite: bool = False, batch_size: int = 1, workers: int = 2, alpha: float = 0.5,
                      smooth: float = 0.0, gate: float = 0.1, flow: bool = False, save_txt: bool = False,
                      max_frames: int | None = None, duration: float | None = None,
                      say: Callable[[str], None] = print) -> FolderResult:
    """Predict every image and video that ``inputs`` (files, folders, globs) name and write
    their outputs under ``out`` (default ``runs/predict/N`` under the working directory, the
    first free N counting from 1; created only once there is an input to predict), and
    report each finished video to ``say``. Live sources (a camera index or ``/dev/videoN``,
    ``rtsp://``, ``http(s)://``, ``udp://`` ... URLs) run until ``max_frames`` / ``duration`` /
    their end (``fcnkit.inference.stream``). ``smooth`` > 0 filters videos' class
    probabilities over time (``TemporalFilter(smooth, gate, flow=flow)``). An ``out`` that cannot
    be a folder we write in, or videos without the ``video`` extra, are refused (ValueError /
    RuntimeError) before anything is predicted.

    Inputs whose outputs all exist are skipped (``existing``) unless ``overwrite``, so a
    killed run, started again, finishes only the rest; a partial set is someone else's file
    in the way and is reported. Under ``torchrun`` (a joined process group) the ranks share
    the inputs deterministically (images and videos each dealt round-robin in sorted
    order), each output is written by one rank, and every rank returns the same merged
    result."""
    if out is None:  # every rank writes into rank 0's choice
        out = D.gather_objects(next_run_dir("predict"))[0]
    out = check_output_dir(out)
    def temporal_filter() -> TemporalFilter | None:  # one per video; bad settings refused before any work
        return TemporalFilter(smooth, gate, flow=flow) if smooth != 0 else None

    temporal_filter()
    live = [str(i) for i in inputs if is_live_source(str(i))]
    files, missing = collect_inputs([str(i) for i in inputs if not is_live_source(str(i))])
    if live or any(f.is_video for f in files):
        require("video", "av")
    dist = D.current()
    result = FolderResult(out, processes=dist.world_size)
    if dist.is_main:  # the same on every rank: reported once
        result.failures = [Failure(Path(spec), reason) for spec, reason in missing]
    jobs, refused = plan_jobs(files, out)
    if dist.is_main:
        result.failures += refused
    if jobs or live:  # nothing to read: no empty output folder either
        out.mkdir(parents=True, exist_ok=True)
    shard = lambda js: js[dist.rank::dist.world_size]  # noqa: E731
    jobs = shard([j for j in jobs if not j.input.is_video]) + shard([j for j in jobs if j.input.is_video])
    todo: list[tuple[OutputTarget, dict[str, Path]]] = []
    for job in jobs:
        paths = output_paths(job, out, predictor, probs, save_txt)
        existing = [p for p in paths.values() if p.exists()]
        if existing and not overwrite:
            if len(existing) == len(paths):
                result.existing += 1
            else:
                result.failures.append(Failure(job.input.path, f"output exists: {existing[0]} (use --overwrite)"))
        else:
            todo.append((job, paths))
    try:
        _predict_jobs(predictor, todo, result, probs=probs, batch_size=batch_size, workers=workers, alpha=alpha,
                      temporal_filter=temporal_filter, say=say)
        if dist.is_main:  # a live source is watched by one process
            for source in live:
                _predict_live(predictor, source, out, result, probs=probs, alpha=alpha, overwrite=overwrite,
                              smooth=temporal_filter(),
                              max_frames=max_frames, duration=duration, say=say)
    finally:
        if dist.enabled:  # every rank reaches this, also after a failure of its own (then it re-raises)
            _merge(result, D.gather_objects((result.done, result.existing, result.failures)))
    return result


def _predict_live(predictor: Predictor, source: str, out: Path, result: FolderResult, *, probs: bool, alpha: float,
                  overwrite: bool, smooth: TemporalFilter | None, max_frames: int | None, duration: float | None,
                  say: Callable[[str], None]) -> None:
    paths = video_paths(out / source_name(source), predictor)
    taken = [p for p in paths.values() if p.exists()]
    if taken and not overwrite:
        result.failures.append(Failure(source, f"output exists: {taken[0]} (use --overwrite)"))
        return
    try:
        run = predict_stream(predictor, source, paths["video"], frames_dir=paths.get("frames"),
                             frames_json=paths["frames_json"], probs=probs, alpha=alpha, smooth=smooth,
                             max_frames=max_frames, duration=duration)
    except (ValueError, OSError) as e:
        result.failures.append(Failure(source, str(e).removeprefix(f"{source}: ")))
        return
    done = run.video.frames if run.video else 0
    say(f"{source}: {done} frames in {run.seconds:.1f} s ({run.fps:.1f} fps), {run.dropped} of {run.decoded} "
        f"dropped to keep up; ended: {run.ended}" + (f" -> {run.video.path}" if run.video else ""))
    if run.video is None or run.ended.startswith(("cannot decode", "stalled")):
        result.failures.append(Failure(source, run.ended + ("" if run.video else "; nothing written")))
    else:
        result.done += 1


def _merge(result: FolderResult, parts: list[tuple[int, int, list[Failure]]]) -> None:
    result.done = sum(p[0] for p in parts)
    result.existing = sum(p[1] for p in parts)
    result.failures = sorted((f for p in parts for f in p[2]), key=lambda f: str(f.path))


def _predict_jobs(predictor: Predictor, todo: list[tuple[OutputTarget, dict[str, Path]]], result: FolderResult, *,
                  probs: bool, batch_size: int, workers: int, alpha: float,
                  temporal_filter: Callable[[], TemporalFilter | None], say: Callable[[str], None]) -> None:
    images = [(j, p) for j, p in todo if not j.input.is_video]
    videos = [(j, p) for j, p in todo if j.input.is_video]
    prob_files = ProbabilityFiles({j.input.path: p["probs"] for j, p in images if "probs" in p})
    predictions = predictor.predict_many([j.input.path for j, _ in images], batch_size=batch_size,
                                         num_workers=workers, probabilities=prob_files if probs else False)
    try:
        for (job, paths), prediction in zip(images, predictions):
            if isinstance(prediction, Failure):
                result.failures.append(prediction)
                continue
            try:
                write_outputs(prediction, paths, alpha, prob_files)
            except (OSError, ValueError) as e:  # e.g. disk full, or too large for JPEG: report, go on
                result.failures.append(Failure(job.input.path, f"cannot write outputs ({type(e).__name__}: {e})"))
                continue
            result.done += 1
    finally:
        for path in list(prob_files.temps):  # interrupted or failed: no half-written .npy left behind
            prob_files.discard(path)
    for job, paths in videos:
        try:
            info = predict_video(predictor, job.input.path, paths["video"], batch_size=max(1, batch_size), alpha=alpha,
                                 frames_dir=paths.get("frames"), frames_json=paths["frames_json"], probs=probs,
                                 smooth=temporal_filter())
        except (ValueError, OSError) as e:
            result.failures.append(Failure(job.input.path, str(e).removeprefix(f"{job.input.path}: ")))
            continue
        flicker = f", flicker {100 * info.flicker['flicker']:.2f}% of pixels per frame" if info.flicker and info.flicker["pairs"] else ""
        say(f"{job.input.path}: {info.frames} frames at {float(info.rate):.3g} fps{flicker} -> {info.path}")
        result.done += 1


__all__ = ["FolderResult", "OutputTarget", "ProbabilityFiles", "output_paths", "plan_jobs", "predict_to_folder", "safe_name",
           "video_paths", "write_outputs"]
