"""``fcnkit predict MODEL INPUT... --out DIR``: masks, overlays (and probabilities) for
images of any size and overlay videos, skipping and reporting what cannot be read.

Per image ``<name>`` under ``--out`` (folder inputs keep their sub-folders):
``<name>.mask.png`` class indices with the palette, ``<name>.overlay.jpg``,
``<name>.probs.npy`` (float16 (C, H, W), with ``--probs``) and
``<name>.detections.json`` for detection models; per video ``<name>.overlay.mp4``.
Exit status: 0 all done, 1 some inputs skipped (listed), 2 unusable model or options.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..inference.images import InputFile, collect_inputs
from ..inference.postprocess import save_image, save_mask
from ..inference.predictor import Failure, Prediction, Predictor
from ..io import atomic_write, temp_beside
from .models import parse_size


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="segment images (any size) and videos", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="saved model / training checkpoint, or exported .onnx / OpenVINO .xml")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video files, folders, or globs")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--tile", type=_parse_tile, default=None,
                   help="force tiles of N or HxW pixels ('0': whole image; default: chosen from --max-memory)")
    p.add_argument("--overlap", type=_parse_overlap, default=None,
                   help="tile overlap: fraction of the tile (0.25) or pixels (64); default a quarter "
                        "of the tile, at least 256 pixels, at most half")
    p.add_argument("--max-memory", default=None,
                   help="working-memory budget beyond image and outputs, e.g. 2G (default 2G)")
    p.add_argument("--tta", action="store_true", help="test-time augmentation: flip + scales 0.75,1,1.25")
    p.add_argument("--scales", type=_parse_scales, default=None, help="TTA scales, e.g. 0.5,1,1.5")
    p.add_argument("--flip", action="store_true", help="TTA with horizontal flip")
    p.add_argument("--probs", action="store_true", help="also write float16 class probabilities (.npy)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip them)")
    p.add_argument("--batch-size", type=int, default=1, help="images per forward pass (same-size images)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes decoding images")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (torch models)")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay colour opacity")
    p.set_defaults(func=_predict)


def _parse_tile(text: str) -> int | tuple[int, int]:
    if text.strip() == "0":
        return 0
    if "x" in text.lower():
        return parse_size(text)
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"tile must be N, HxW or 0, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"tile must be positive, not {text!r}")
    return value


def _parse_overlap(text: str) -> float | int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"overlap must be a fraction or pixels, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"overlap must not be negative, not {text!r}")
    return value if value < 1 else int(value)


def _parse_scales(text: str) -> tuple[float, ...]:
    try:
        scales = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"scales must be numbers like 0.75,1,1.25, not {text!r}") from None
    if not scales or any(s <= 0 for s in scales):
        raise argparse.ArgumentTypeError(f"scales must be positive, not {text!r}")
    return scales


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
class Job:
    """One input and the output stem it writes to (``out / stem`` + suffixes)."""

    input: InputFile
    stem: Path


def _plan_jobs(inputs: list[InputFile], out: Path) -> tuple[list[Job], list[Failure]]:
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
            jobs.append(Job(f, stem))
    return jobs, failures


def _outputs(job: Job, out: Path, predictor: Predictor, probs: bool) -> dict[str, Path]:
    base = out / job.stem
    with_suffix = lambda s: base.parent / (base.name + s)  # noqa: E731  (stems may contain dots)
    if job.input.is_video:
        return {"video": with_suffix(".overlay.mp4")}
    paths = {"overlay": with_suffix(".overlay.jpg")}
    if predictor.num_classes:
        paths["mask"] = with_suffix(".mask.png")
        if probs:
            paths["probs"] = with_suffix(".probs.npy")
    if predictor.detection:
        paths["detections"] = with_suffix(".detections.json")
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
        os.replace(self.temps.pop(path), self.targets[path])

    def discard(self, path: Path) -> None:
        tmp = self.temps.pop(path, None)
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _write(result: Prediction, paths: dict[str, Path], alpha: float, probs: ProbabilityFiles) -> None:
    if result.mask is not None:
        save_mask(result.mask, result.palette, paths["mask"])
    if result.probabilities is not None:
        probs.commit(result.path, result.probabilities)
    if "detections" in paths:
        text = json.dumps({"image": str(result.path), "size": list(result.image.shape[:2]),
                           "classes": result.classes, "detections": result.detections or []}, indent=1)
        atomic_write(paths["detections"], lambda f: f.write(text.encode()))
    save_image(result.overlay(alpha), paths["overlay"])


def _predict(args: argparse.Namespace) -> int:
    scales = args.scales or (1.0,)
    predictor = Predictor(args.model, device=args.device, tile=args.tile, overlap=args.overlap,
                          max_memory=args.max_memory, tta=args.tta, scales=scales, flip=args.flip, bf16=args.bf16)
    inputs, missing = collect_inputs(args.inputs)
    failures = [Failure(Path(spec), reason) for spec, reason in missing]
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    jobs, refused = _plan_jobs(inputs, out)
    failures += refused
    todo: list[tuple[Job, dict[str, Path]]] = []
    for job in jobs:
        paths = _outputs(job, out, predictor, args.probs)
        existing = [p for p in paths.values() if p.exists()]
        if existing and not args.overwrite:
            failures.append(Failure(job.input.path, f"output exists: {existing[0]} (use --overwrite)"))
        else:
            todo.append((job, paths))

    images = [(j, p) for j, p in todo if not j.input.is_video]
    videos = [(j, p) for j, p in todo if j.input.is_video]
    done = 0
    probs = ProbabilityFiles({j.input.path: p["probs"] for j, p in images if "probs" in p})
    results = predictor.predict_many([j.input.path for j, _ in images], batch_size=args.batch_size,
                                     num_workers=args.workers, probabilities=probs if args.probs else False)
    try:
        for (job, paths), result in zip(images, results):
            if isinstance(result, Failure):
                failures.append(result)
                continue
            try:
                _write(result, paths, args.alpha, probs)
            except (OSError, ValueError) as e:  # e.g. disk full, or too large for JPEG: report, go on
                failures.append(Failure(job.input.path, f"cannot write outputs ({type(e).__name__}: {e})"))
                continue
            done += 1
    finally:
        for path in list(probs.temps):  # interrupted or failed: no half-written .npy left behind
            probs.discard(path)
    if videos:
        from ..inference.video import predict_video

        for job, paths in videos:
            try:
                info = predict_video(predictor, job.input.path, paths["video"], batch_size=max(1, args.batch_size),
                                     alpha=args.alpha)
            except (ValueError, OSError) as e:
                failures.append(Failure(job.input.path, str(e).removeprefix(f"{job.input.path}: ")))
                continue
            print(f"{job.input.path}: {info.frames} frames at {float(info.rate):.3g} fps -> {info.path}")
            done += 1

    print(f"predicted {done} of {done + len(failures)} inputs -> {out}")
    if failures:
        print(f"{len(failures)} input(s) skipped:", file=sys.stderr)
        for f in failures:
            print(f"  {f.path}: {f.reason}", file=sys.stderr)
        return 1
    return 0
