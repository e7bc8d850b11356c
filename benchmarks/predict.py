"""Prediction throughput at 360x480, and peak memory vs image size, whole vs tiled.

Throughput: ``Predictor.predict_batch`` on in-memory 360x480 images, fp32 and bf16
rounds interleaved so a noisy neighbour slows both alike; then end to end from PNG
files through ``predict_many`` (DataLoader workers decoding while the model runs).
Memory: every (size, mode) case runs in a fresh Python process that builds the same
model, allocates the random image, warms up on a small input, records its peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) as the baseline, predicts, and records
the peak again; "working" is the difference -- what inference itself added on top of
interpreter, weights and the input image. Whole-image cases whose estimated working
memory exceeds ``--whole-limit`` are skipped (with the estimate) instead of swapping.

    .venv/bin/python benchmarks/predict.py     # light FCN-8s (MobileNetV3-Large), 2000/4000/8000
    .venv/bin/python benchmarks/predict.py --sizes 96,160 --throughput-size 64x96 --repeats 1 \\
        --files 4 --width 0.25 --budget 1M        # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fcnkit import create_model
from fcnkit.cli.models import parse_size
from fcnkit.inference import Predictor
from fcnkit.inference.tiling import parse_memory, tiled_bytes


def build(args: argparse.Namespace) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(args.model, num_classes=args.num_classes, encoder=args.encoder, width=args.width).eval()


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB


def child(args: argparse.Namespace) -> None:
    """One memory case in this (fresh) process; prints a JSON line."""
    torch.set_num_threads(args.threads)
    if args.no_trim:  # what inference/memory.py's heap trimming saves, measured by switching it off
        import fcnkit.inference.predictor as predictor_module

        predictor_module.release_freed_memory = lambda: False
    model = build(args)
    if args.mode == "whole":
        predictor = Predictor(model, tile=0, bf16=args.bf16)
    else:  # the tile is chosen from the budget unless forced; the budget also keeps the global-pool
        # context pass (MobileNetV3's SE blocks) from running on the whole image
        predictor = Predictor(model, tile=args.tile or None, max_memory=args.budget, bf16=args.bf16)
    predictor.predict(np.zeros((64, 64, 3), np.uint8))  # warm-up: thread pools, kernels
    s = args.size
    image = np.random.default_rng(0).integers(0, 256, (s, s, 3), dtype=np.uint8)  # (S, S, 3)
    base = rss_mb()
    t = time.perf_counter()
    result = predictor.predict(image)
    seconds = time.perf_counter() - t
    assert result.mask.shape == (s, s)
    plan = predictor.plan_for(s, s)
    cost = predictor._cost_per_pixel()  # the planner's estimate, to compare with the measurement
    t = plan.tile[0] if plan else None
    estimate = cost * s * s if plan is None else tiled_bytes(s, s, plan, bytes_per_pixel=cost,
                                                             num_classes=predictor.spec.num_classes)
    print(json.dumps({"size": s, "mode": args.mode, "tile": t, "base_mb": base, "peak_mb": rss_mb(),
                      "seconds": seconds, "estimate_mb": estimate / 2**20}))


def estimate_whole_gb(args: argparse.Namespace, size: int) -> float:
    predictor = Predictor(build(args), tile=0)
    return predictor.backend.bytes_per_pixel() * size * size / 2**30


def memory_table(args: argparse.Namespace) -> None:
    tiles = f"tile {args.tile}" if args.tile else f"tiles chosen from --budget {args.budget}"
    trim = "" if not args.no_trim else ", heap trimming OFF"
    print(f"\npeak RSS{trim}, fresh process per case ({args.model}/{args.encoder} width {args.width}, "
          f"{args.num_classes} classes, {tiles}, {args.threads} threads)")
    print(f"{'size':>11} {'mode':>6} {'tile':>5} {'image MB':>9} {'base MB':>8} {'peak MB':>8} "
          f"{'working MB':>10} {'planner est. MB':>15} {'seconds':>8}")
    limit_gb = parse_memory(args.whole_limit) / 2**30
    for size in args.sizes:
        for mode in ("whole", "tiled"):
            label = f"{size}x{size}"
            if mode == "whole" and (est := estimate_whole_gb(args, size)) > limit_gb:
                print(f"{label:>11} {mode:>6}  skipped: estimated {est:.1f} GB > --whole-limit {args.whole_limit}")
                continue
            cmd = [sys.executable, __file__, "--child", "--size", str(size), "--mode", mode,
                   "--model", args.model, "--encoder", args.encoder, "--width", str(args.width),
                   "--num-classes", str(args.num_classes), "--tile", str(args.tile), "--budget", args.budget,
                   "--threads", str(args.threads)] + (["--bf16"] if args.bf16 else []) + \
                (["--no-trim"] if args.no_trim else [])
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
                print(f"{label:>11} {mode:>6}  failed (exit {proc.returncode}): {tail}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            image_mb = size * size * 3 / 2**20
            print(f"{label:>11} {mode:>6} {r['tile'] or '-':>5} {image_mb:9.0f} {r['base_mb']:8.0f} "
                  f"{r['peak_mb']:8.0f} {r['peak_mb'] - r['base_mb']:10.0f} {r['estimate_mb']:15.0f} "
                  f"{r['seconds']:8.1f}")


def throughput_table(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    h, w = args.throughput_size
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(args.batch)]
    model = build(args)
    runs = {f"{'bf16' if bf16 else 'fp32'} batch {args.batch}": Predictor(model, tile=0, bf16=bf16)
            for bf16 in (False, True)}
    for p in runs.values():
        p.predict_batch(images)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for label, p in runs.items():
            t = time.perf_counter()
            p.predict_batch(images)
            times[label].append(time.perf_counter() - t)
    print(f"throughput at {h}x{w} ({args.model}/{args.encoder} width {args.width}, {args.threads} threads, "
          f"median of {args.repeats})")
    print(f"{'variant':>34} {'images/s':>9} {'ms/image':>9}")
    for label, ts in times.items():
        per_image = float(np.median(ts)) / len(images)
        print(f"{label:>34} {1 / per_image:9.2f} {per_image * 1000:9.1f}")
    # end to end: PNG files decoded by DataLoader workers while the model runs (as `fcnkit predict`)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.files):
            paths.append(Path(tmp) / f"{i}.png")
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(paths[-1])
        for bf16 in (False, True):
            p = Predictor(model, tile=0, bf16=bf16)
            t = time.perf_counter()
            n = sum(1 for _ in p.predict_many(paths, batch_size=args.batch, num_workers=args.workers,
                                              progress=False))
            seconds = time.perf_counter() - t
            label = f"{'bf16' if bf16 else 'fp32'} files, {args.workers} workers, batch {args.batch}"
            print(f"{label:>34} {n / seconds:9.2f} {seconds / n * 1000:9.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fcn8s")
    ap.add_argument("--encoder", default="mobilenet_v3_large")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--num-classes", type=int, default=11)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--throughput-size", type=parse_size, default=(360, 480))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--files", type=int, default=20, help="PNG files for the end-to-end predict_many rows")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers for the end-to-end rows")
    ap.add_argument("--sizes", type=lambda t: [int(v) for v in t.split(",")], default=[2000, 4000, 8000])
    ap.add_argument("--tile", type=int, default=0, help="force this tile size in the tiled cases (0: from --budget)")
    ap.add_argument("--budget", default="512M", help="memory budget of the tiled cases (Predictor max_memory)")
    ap.add_argument("--whole-limit", default="12G", help="skip whole-image cases estimated above this")
    ap.add_argument("--bf16", action="store_true", help="memory cases in bf16")
    ap.add_argument("--no-trim", action="store_true", help="memory cases without returning freed heap pages "
                                                           "to the OS between tiles (inference/memory.py)")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    # one memory case (internal: run by the parent in a fresh process)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=["whole", "tiled"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    if not args.skip_throughput:
        throughput_table(args)
    if not args.skip_memory:
        memory_table(args)


if __name__ == "__main__":
    main()
