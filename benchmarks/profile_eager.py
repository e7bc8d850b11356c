"""Where eager PyTorch spends a forward pass: ours next to torchvision's LR-ASPP, one run.

``torch.profiler`` over ``--repeats`` forward passes of each net at ``--size``, batch 1,
fp32, ``--threads`` threads, the path ``fcnkit predict`` takes on a CPU (channels_last;
``--fold-bn`` as ``fcnkit optimize --backend torch`` does). Prints each net's operators by
self CPU time (the ones worth fixing are at the top) and the time per top-level stage
(encoder stages, decoder), then the two nets' medians side by side, and the time of the
class argmax that follows on the host (torch's ``argmax(1)`` against ``class_map``).

    .venv/bin/python benchmarks/profile_eager.py
    .venv/bin/python benchmarks/profile_eager.py --size 64x96 --repeats 2   # smoke
Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict

import torch
from torch import nn

import fcnkit
from fcnkit.cli.models import parse_size
from fcnkit.engine.runtime import cpu_model
from fcnkit.export.optimize import transform
from fcnkit.inference.memory import keep_freed_heap
from fcnkit.nn import class_map
from pretrained_speed import LRASPP  # benchmarks/ is on the path when run as a script


def stage_times(net: nn.Module, x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median ms of each direct child of the net's top modules (hooks around their forward)."""
    spent: dict[str, list[float]] = defaultdict(list)
    started: dict[str, float] = {}
    handles = []
    top = [m for m in (getattr(net, "encoder", None), getattr(net, "decoder", None),
                       getattr(getattr(net, "net", None), "backbone", None),
                       getattr(getattr(net, "net", None), "classifier", None)) if m is not None]
    for parent in top:
        for name, child in parent.named_children():
            key = f"{type(parent).__name__}.{name}"
            handles.append(child.register_forward_pre_hook(
                lambda m, a, k=key: started.__setitem__(k, time.perf_counter())))
            handles.append(child.register_forward_hook(
                lambda m, a, o, k=key: spent[k].append(1000 * (time.perf_counter() - started[k]))))
    with torch.inference_mode():
        for _ in range(repeats):
            net(x)
    for h in handles:
        h.remove()
    return {k: statistics.median(v) for k, v in spent.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="camvid-fcn8s-lite0")
    p.add_argument("--size", type=parse_size, default=(360, 480))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds of --repeats forwards per net")
    p.add_argument("--fold-bn", action="store_true")
    p.add_argument("--rows", type=int, default=15)
    p.add_argument("--keep-heap", action="store_true",
                   help="fcnkit.inference.memory.keep_freed_heap() first (what fcnkit's torch runner does)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.keep_heap:
        keep_freed_heap()
    ours = fcnkit.load(args.model).eval()
    nets = {"ours": ours, "lraspp": LRASPP(ours.spec.num_classes).eval()}
    h, w = args.size
    x = torch.randn(1, 3, h, w).contiguous(memory_format=torch.channels_last)
    print(f"{cpu_model()}, {args.threads} threads, {h}x{w}, fp32 channels_last"
          + (", BN folded" if args.fold_bn else "") + (", freed heap kept" if args.keep_heap else ""))
    if args.fold_bn:
        nets = {name: transform(net, fold_bn=True)[0] for name, net in nets.items()}
    nets = {name: net.to(memory_format=torch.channels_last) for name, net in nets.items()}
    times: dict[str, list[float]] = defaultdict(list)
    with torch.inference_mode():
        for net in nets.values():
            for _ in range(3):
                net(x)
        for _ in range(args.rounds):  # interleaved: both nets see the same machine
            for name, net in nets.items():
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    net(x)
                    times[name].append(1000 * (time.perf_counter() - t0))
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, net in nets.items():
        with torch.inference_mode(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                                            record_shapes=True) as prof:
            for _ in range(args.repeats):
                net(x)
        print(f"\n=== {name}: {medians[name]:.1f} ms per forward (median of {args.rounds} x {args.repeats}) ===")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
        print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=args.rows))
        for stage, t in stage_times(net, x, args.repeats).items():
            print(f"  {stage:<40} {t:7.2f} ms")
    print(f"\nours {medians['ours']:.1f} ms, LR-ASPP {medians['lraspp']:.1f} ms: "
          f"{medians['ours'] / medians['lraspp']:.2f}x")
    # what the predictor does with the scores next: one class per pixel
    scores = torch.randn(1, ours.spec.num_classes, h, w)
    for name, fn in (("argmax(1)", lambda: scores.argmax(1)), ("fcnkit.nn.class_map", lambda: class_map(scores))):
        fn()
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            fn()
        print(f"{name:<22} on (1, {ours.spec.num_classes}, {h}, {w}) scores: "
              f"{1000 * (time.perf_counter() - t0) / args.repeats:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
