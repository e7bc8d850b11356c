"""What a detection head costs: FCN-8s segmentation vs fcn8s-det (stride 4 / 8) vs the
joint model, on one encoder, plus box decoding; forward time and FLOPs side by side.

Rows are measured interleaved round-robin in this one run, so a noisy neighbour hurts
all alike; ratios are to the segmentation FCN-8s on the same encoder. The joint row
shows what sharing one encoder saves over running the two models one after the other.

    .venv/bin/python benchmarks/detection.py --encoder mobilenet_v3_large --size 384x384
    .venv/bin/python benchmarks/detection.py --encoder mobilenet_v3_large --width 0.25 \\
        --size 64x64 --repeats 1                                                      # smoke
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fcnkit.cli.models import parse_size
from fcnkit.detection import decode
from fcnkit.models import create_model
from fcnkit.profile import count_flops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", default="mobilenet_v3_large")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--size", type=parse_size, default=(384, 384))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--classes", type=int, default=11, help="segmentation classes")
    ap.add_argument("--det-classes", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for every row")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    common = {"encoder": args.encoder, "width": args.width}
    rows = {
        "fcn8s (segmentation)": create_model("fcn8s", num_classes=args.classes, **common),
        "fcn8s-det stride 8": create_model("fcn8s_det", det_classes=args.det_classes, output_stride=8, **common),
        "fcn8s-det stride 4": create_model("fcn8s_det", det_classes=args.det_classes, output_stride=4, **common),
        "fcn8s-joint stride 4": create_model("fcn8s_joint", num_classes=args.classes, det_classes=args.det_classes,
                                             output_stride=4, **common),
    }
    x = torch.randn(args.batch, 3, *args.size).contiguous(memory_format=torch.channels_last)
    for m in rows.values():
        m.eval().to(memory_format=torch.channels_last)
    flops = {name: count_flops(m, x[:1])[0] for name, m in rows.items()}
    times: dict[str, list[float]] = {name: [] for name in rows}
    decode_times: list[float] = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
        for name, m in rows.items():  # warm-up
            m(x)
        for _ in range(args.repeats):
            for name, m in rows.items():
                t = time.perf_counter()
                out = m(x)
                times[name].append(time.perf_counter() - t)
                if name == "fcn8s-det stride 4":
                    t = time.perf_counter()
                    decode(out, stride=4, nms_iou=0.5)
                    decode_times.append(time.perf_counter() - t)
    base = statistics.median(times["fcn8s (segmentation)"])
    print(f"{args.encoder} width {args.width}, input {args.batch}x3x{args.size[0]}x{args.size[1]}, "
          f"{'bf16' if args.bf16 else 'fp32'}, {args.threads} threads, median of {args.repeats}")
    print(f"{'model':24s} {'ms':>9s} {'x seg':>7s} {'GFLOP':>8s}")
    for name in rows:
        med = statistics.median(times[name])
        print(f"{name:24s} {med * 1e3:9.1f} {med / base:7.2f} {flops[name] / 1e9:8.2f}")
    seq = base + statistics.median(times["fcn8s-det stride 4"])
    joint = statistics.median(times["fcn8s-joint stride 4"])
    print(f"joint vs fcn8s + fcn8s-det run one after the other: {joint / seq:.2f}x the time")
    print(f"decode (3x3 peaks, top-100, class-wise NMS): {statistics.median(decode_times) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
