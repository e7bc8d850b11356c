"""Where OpenVINO spends its time: per-layer counters of our CamVid FCN-8s and LR-ASPP, int8 or fp32.

The speed table (``pretrained_speed.py``) says how long each net takes; this says why.
Both nets are built as ``fcnkit optimize`` builds them (NNCF int8, calibrated on CamVid
train images), compiled with OpenVINO's performance counters, run ``--repeats`` times,
and each executed node's time is summed by layer type (and for ours also by node), so
the two nets' profiles sit side by side.

    .venv/bin/python benchmarks/profile_openvino.py                  # int8, 360x480, 2 threads
    .venv/bin/python benchmarks/profile_openvino.py --precision fp32 --top 30
    .venv/bin/python benchmarks/profile_openvino.py --subpixel       # also ours with upscore8 as conv + depth-to-space
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

import fcnkit
from fcnkit.engine.runtime import cpu_model
from fcnkit.engine.samples import load_samples
from fcnkit.export import optimize as opt
from fcnkit.models.subpixel import subpixel_upsampling

from pretrained_speed import LRASPP, add_model_and_data


def _profile(xml: Path, x: np.ndarray, *, threads: int, repeats: int,
             dynamic: bool) -> tuple[float, list[tuple[str, str, float]]]:
    """(median ms per inference, [(node, layer type, mean ms per inference)]) of executed nodes.

    Compiled for ``x``'s shape, as fcnkit's OpenVINO runtime compiles the first shapes it sees,
    unless ``dynamic``: the dynamic-shape network keeps a reference Pad, an fp32 first conv and
    fp32 small transposed convs that the static one folds or runs in int8."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(xml)
    if not dynamic:
        model.reshape({0: list(x.shape)})
    compiled = core.compile_model(model, "CPU", {"PERF_COUNT": "YES", "INFERENCE_NUM_THREADS": threads,
                                                 "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    for _ in range(3):
        request.infer({0: x})
    totals: dict[tuple[str, str], float] = defaultdict(float)
    times = []
    for _ in range(repeats):
        request.infer({0: x})
        times.append(request.latency)
        for info in request.profiling_info:
            if info.status == info.Status.EXECUTED:
                totals[(info.node_name, f"{info.node_type} ({info.exec_type})")] += info.real_time.total_seconds() * 1e3
    nodes = [(name, kind, t / repeats) for (name, kind), t in totals.items()]
    return float(np.median(times)), sorted(nodes, key=lambda n: -n[2])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_and_data(p)
    p.add_argument("--precision", default="int8", choices=("fp32", "int8"))
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--top", type=int, default=20, help="slowest nodes of ours to list")
    p.add_argument("--subpixel", action="store_true", help="also profile ours with its large upsampling rewritten "
                   "as conv + depth-to-space (fcnkit.models.subpixel)")
    p.add_argument("--dynamic", action="store_true", help="profile the dynamic-shape network (what fcnkit's "
                   "runtime falls back to after a few distinct input shapes) instead of one compiled for --size")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ours = fcnkit.load(args.model).eval()
    nets = [("ours", ours), ("LR-ASPP", LRASPP(ours.spec.num_classes).eval())]
    if args.subpixel:
        rewritten = copy.deepcopy(ours)
        subpixel_upsampling(rewritten)
        nets.insert(1, ("ours, sub-pixel", rewritten))
    h, w = args.size
    by_type: dict[str, dict[str, float]] = {}
    totals = {}
    with tempfile.TemporaryDirectory(prefix="fcnkit-ovprof.") as work:
        for label, net in nets:
            prep = net.spec.preprocessing
            calib = [s.image for s in load_samples(args.data, "train", prep, limit=args.calib_limit)]
            variant = opt.build_variant(net, backend="openvino", precision=args.precision, calibration=calib,
                                        workdir=Path(work) / label)
            xml = next(f for f in variant.staged if f.suffix == ".xml")
            x = prep(torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))).numpy()
            median, nodes = _profile(xml, x, threads=args.threads, repeats=args.repeats, dynamic=args.dynamic)
            counted = sum(t for *_, t in nodes)
            totals[label] = (median, counted)
            kinds: dict[str, float] = defaultdict(float)
            for _, kind, t in nodes:
                kinds[kind] += t
            by_type[label] = dict(kinds)
            if label.startswith("ours"):
                print(f"\nslowest {args.top} nodes of {label} (ms per inference):")
                for name, kind, t in nodes[:args.top]:
                    print(f"  {t:6.2f}  {kind:<40} {name}")
    shapes = "dynamic-shape network" if args.dynamic else "network compiled for this shape"
    print(f"\n{cpu_model()}, {args.threads} threads, {h}x{w}, OpenVINO {args.precision}, {shapes}, "
          f"mean of {args.repeats} runs")
    labels = [label for label, _ in nets]
    print("| layer type (exec) | " + " | ".join(f"{n} ms" for n in labels) + " |\n|" + " --- |" * (len(labels) + 1))
    kinds = sorted(set().union(*by_type.values()), key=lambda k: -sum(t.get(k, 0.0) for t in by_type.values()))
    for kind in kinds:
        row = [by_type[n].get(kind, 0.0) for n in labels]
        if sum(row) >= 0.05:
            print(f"| {kind} | " + " | ".join(f"{t:.2f}" for t in row) + " |")
    print("| **sum of nodes** | " + " | ".join(f"**{totals[n][1]:.1f}**" for n in labels) + " |")
    print("| median latency | " + " | ".join(f"{totals[n][0]:.1f}" for n in labels) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
