"""Training speed (images/s) of FCN-8s: the reference recipe's step vs fcnkit's default step.

For VGG-16 the baseline is the authors' setup: reference geometry (pad 100 + crops),
fp32, eager, NCHW, SGD momentum 0.99 with a summed loss. fcnkit's default path is
the fast geometry, bf16 autocast, channels_last (the trainer's defaults; ``--compile``
adds a torch.compile row). Lighter encoders have no reference geometry, so their
baseline is fast-geometry fp32 eager NCHW. Rows are interleaved round-robin so a
noisy neighbour slows every row alike; ratios are to each encoder's baseline.

    .venv/bin/python benchmarks/train_step.py                       # 360x480, batch 1, all encoders
    .venv/bin/python benchmarks/train_step.py --encoders vgg16 --repeats 5
    .venv/bin/python benchmarks/train_step.py --size 64x96 --width 0.0625 --repeats 1 --warmup 0 \\
        --encoders vgg16,mobilenet_v3_large                          # smoke
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fcnkit.cli.models import parse_size
from fcnkit.config import TrainConfig
from fcnkit.engine.optim import build_optimizer
from fcnkit.engine.runtime import autocast, memory_format
from fcnkit.heads import SEG_OUTPUT
from fcnkit.losses import SegmentationLoss
from fcnkit.models import create_model

ENCODERS = ["vgg16", "mobilenet_v3_large", "resnet18", "resnet34", "resnet50", "efficientnet_lite0",
            "efficientnet_lite1", "efficientnet_lite2"]


def variants(encoder: str, compile_: bool) -> list[dict]:
    """(label, geometry, autocast dtype, channels_last, compile, recipe) rows for one encoder."""
    reference = TrainConfig(optimizer="sgd", momentum=0.99, lr=1e-10, loss_reduction="sum", bias_lr_mult=2.0)
    modern = TrainConfig()  # the trainer's defaults (SGD 0.9, mean loss)
    rows = [dict(label="reference fp32 eager" if encoder == "vgg16" else "fp32 eager (baseline)",
                 geometry="reference" if encoder == "vgg16" else "fast", dtype=None, cl=False, compile=False,
                 cfg=reference)]
    if encoder != "vgg16":  # what each speed trick gives alone (depthwise convs gain little from bf16)
        rows += [dict(label="fp32 channels_last", geometry="fast", dtype=None, cl=True, compile=False, cfg=modern),
                 dict(label="bf16 NCHW", geometry="fast", dtype=torch.bfloat16, cl=False, compile=False, cfg=modern)]
    rows += [dict(label="fcnkit default: fast bf16 channels_last", geometry="fast", dtype=torch.bfloat16, cl=True,
                 compile=False, cfg=modern)]
    if compile_:
        rows.append(dict(label="fp32 channels_last + torch.compile", geometry="fast", dtype=None, cl=True,
                         compile=True, cfg=modern))
        rows.append(dict(label="fcnkit default + torch.compile", geometry="fast", dtype=torch.bfloat16, cl=True,
                         compile=True, cfg=modern))
    return rows


def build(encoder: str, row: dict, args: argparse.Namespace) -> dict:
    width = args.width if encoder in ("vgg16", "mobilenet_v3_large") else 1.0
    model = create_model(args.model, num_classes=args.num_classes, encoder=encoder, geometry=row["geometry"],
                         width=width).train()
    mf = memory_format(row["cl"])
    model = model.to(memory_format=mf)
    net = torch.compile(model) if row["compile"] else model
    opt = build_optimizer(model, row["cfg"])
    loss_fn = SegmentationLoss("ce", reduction=row["cfg"].loss_reduction)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, 3, *args.size, generator=g).contiguous(memory_format=mf)
    y = torch.randint(0, args.num_classes, (args.batch_size, *args.size), generator=g)
    device = torch.device("cpu")

    def step() -> None:
        with autocast(device, row["dtype"]):
            logits = net(x)[SEG_OUTPUT]  # (N, C, H, W)
        loss = loss_fn(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return {"encoder": encoder, "label": row["label"], "step": step, "times": []}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=parse_size, default=(360, 480), help="input HxW (default 360x480)")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--model", default="fcn8s")
    ap.add_argument("--encoders", default=",".join(ENCODERS), help=f"comma list from {ENCODERS}")
    ap.add_argument("--width", type=float, default=1.0, help="channel multiplier (VGG-16, MobileNetV3)")
    ap.add_argument("--num-classes", type=int, default=11)
    ap.add_argument("--repeats", type=int, default=5, help="timed steps per row")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per row first")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--compile", action="store_true", help="add a torch.compile row per encoder")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    encoders = [e.strip() for e in args.encoders.split(",") if e.strip()]
    unknown = set(encoders) - set(ENCODERS)
    if unknown:
        ap.error(f"unknown encoders {sorted(unknown)}; choose from {ENCODERS}")

    runs = [build(enc, row, args) for enc in encoders for row in variants(enc, args.compile)]
    for r in runs:
        for _ in range(args.warmup):
            r["step"]()
    for _ in range(args.repeats):  # round-robin: every row sees the same machine load
        for r in runs:
            t0 = time.perf_counter()
            r["step"]()
            r["times"].append(time.perf_counter() - t0)

    h, w = args.size
    print(f"training step, {args.model}, {h}x{w}, batch {args.batch_size}, width {args.width}, "
          f"{args.threads} threads, median of {args.repeats}")
    print(f"{'encoder':<20} {'variant':<42} {'s/step':>8} {'img/s':>8} {'speed-up':>9}")
    base = {}
    for r in runs:
        t = statistics.median(r["times"])
        base.setdefault(r["encoder"], t)
        print(f"{r['encoder']:<20} {r['label']:<42} {t:8.3f} {args.batch_size / t:8.2f} "
              f"{base[r['encoder']] / t:8.2f}x")


if __name__ == "__main__":
    main()
