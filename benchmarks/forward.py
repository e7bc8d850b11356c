"""Forward speed of VGG-16 FCN-8s: reference vs fast geometry, fp32 vs bf16, NCHW vs channels_last.

Every row is measured in this one run, interleaved round-robin so a noisy neighbour
hurts all rows alike; ratios are to the reference-geometry fp32 eager baseline.

    .venv/bin/python benchmarks/forward.py                 # 360x480, the paper's net
    .venv/bin/python benchmarks/forward.py --width 0.0625 --size 64x64 --repeats 1   # smoke
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

import fcnkit
from fcnkit.cli.models import parse_size
from fcnkit.profile import count_flops

VARIANTS = [  # (label, geometry, bf16, channels_last)
    ("reference fp32", "reference", False, False),
    ("fast fp32", "fast", False, False),
    ("fast fp32 channels_last", "fast", False, True),
    ("fast bf16", "fast", True, False),
    ("fast bf16 channels_last", "fast", True, True),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=parse_size, default=(360, 480))
    ap.add_argument("--model", default="fcn8s")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--num-classes", type=int, default=11)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    x = torch.randn(1, 3, *args.size)
    runs = []
    for label, geometry, bf16, cl in VARIANTS:
        model = fcnkit.create_model(args.model, num_classes=args.num_classes, geometry=geometry, width=args.width).eval()
        flops, _ = count_flops(model, x)
        inp = x
        if cl:
            model = model.to(memory_format=torch.channels_last)
            inp = x.contiguous(memory_format=torch.channels_last)
        ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
        runs.append({"label": label, "model": model, "x": inp, "ctx": ctx, "flops": flops, "times": []})

    with torch.inference_mode():
        for r in runs:
            for _ in range(args.warmup):
                with r["ctx"]():
                    r["model"](r["x"])
        for _ in range(args.repeats):  # round-robin: each repeat times every variant once
            for r in runs:
                t = time.perf_counter()
                with r["ctx"]():
                    r["model"](r["x"])
                r["times"].append(time.perf_counter() - t)

    base = statistics.median(runs[0]["times"])
    print(f"{args.model} width {args.width}, input {args.size[0]}x{args.size[1]}, {args.threads} threads, "
          f"median of {args.repeats}")
    print(f"{'variant':<26} {'ms/image':>9} {'GFLOP':>7} {'GFLOP/s':>8} {'speed-up':>9}")
    for r in runs:
        t = statistics.median(r["times"])
        print(f"{r['label']:<26} {t * 1e3:>9.1f} {r['flops'] / 1e9:>7.1f} {r['flops'] / t / 1e9:>8.1f} {base / t:>8.2f}x")


if __name__ == "__main__":
    main()
