"""``fcnkit bench MODEL... --size HxW``: latency, throughput and share of the machine's peak.

MODEL is a saved model / checkpoint / optimised ``.pt`` (PyTorch), an ``.onnx`` file
(ONNX Runtime) or an ``.xml`` IR (OpenVINO); append ``@bf16``, ``@fp32`` and/or
``@compile`` (comma-separated) to override how it runs, e.g. ``model.pt@bf16,compile``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import add_overwrite, add_quiet, examples, refuse_existing
from .models import parse_size

CHART_SUFFIXES = (".png", ".svg", ".pdf")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time models (torch / ONNX Runtime / OpenVINO) side by side",
                       description=__doc__.split("\n\n", 1)[1],
                       epilog=examples("fcnkit bench camvid-fcn8s-lite0 camvid.onnx --size 360x480",
                                       "fcnkit bench model.pt model.pt@bf16,compile model.xml --threads 2 "
                                       "--json bench.json"))
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="model files or weights names, each optionally with @fp32 / @bf16 / @compile")
    p.add_argument("--size", type=parse_size, default=(360, 480), help="input HxW (default 360x480)")
    p.add_argument("--batch", type=int, default=1, help="images per forward pass")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads for every backend (default 2)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs per model before timing")
    p.add_argument("--repeats", type=int, default=10, help="timed runs per model (median and p90 are reported)")
    p.add_argument("--peak-gflops", type=float, default=None,
                   help="matmul peak to quote %% of (default: measure fp32 and bf16 matmul peaks now)")
    p.add_argument("--chart", type=Path, default=None,
                   help="chart file, .png, .svg or .pdf (default: runs/bench/N/bench.png, the first free N)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    add_overwrite(p)
    add_quiet(p)
    p.set_defaults(func=_bench)


def parse_model_arg(text: str) -> tuple[Path, dict]:
    """'m.xml@bf16,compile' -> (Path('m.xml'), {'precision': 'bf16', 'compile': True}); a weights
    name (``fcnkit weights``) becomes its file."""
    from ..models.zoo import resolve

    path, _, opts = text.partition("@")
    kwargs: dict = {}
    for opt in filter(None, opts.split(",")):
        if opt in ("fp32", "bf16"):
            kwargs["precision"] = opt
        elif opt == "compile":
            kwargs["compile"] = True
        else:
            raise ValueError(f"{text}: unknown option {opt!r} (use fp32, bf16, compile)")
    return resolve(path), kwargs


def _bench(args: argparse.Namespace) -> int:
    import torch

    from ..export.bench import BenchRow, format_table, machine_peaks, peak_for, plot_rows, time_callable
    from ..inference.runtime import backend_of, open_model
    from ..io import atomic_write_text, check_output_file, next_run_dir
    from ..models.saved import build_structure
    from ..profile import count_flops

    if args.batch < 1 or args.repeats < 1 or args.warmup < 0:
        raise ValueError("--batch and --repeats must be >= 1 and --warmup >= 0")
    refuse_existing(args.chart, args.json, overwrite=args.overwrite)  # before minutes of timing
    chart = check_output_file(args.chart or next_run_dir("bench") / "bench.png", suffixes=CHART_SUFFIXES,
                              what="chart")
    if args.json:
        check_output_file(args.json, suffixes=(".json",), what="JSON report")
    torch.set_num_threads(args.threads)
    specs = [parse_model_arg(m) for m in args.models]
    for path, _ in specs:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such model file")
    if args.peak_gflops:
        peaks = {"fp32": args.peak_gflops, "bf16": args.peak_gflops}
    else:
        peaks = machine_peaks(args.threads)
        print(f"matmul peak on {args.threads} threads: fp32 {peaks['fp32']:.0f} GFLOP/s, "
              f"bf16 {peaks['bf16']:.0f} GFLOP/s (int8 rows are quoted against bf16)")
    h, w = args.size
    rows = []
    for text, (path, kwargs) in zip(args.models, specs):
        runtime = open_model(path, threads=args.threads, **kwargs)
        runtime.expect_one_shape()  # a fixed-size benchmark (OpenVINO compiles a static-shape network)
        # FLOPs are counted on a torch twin: the runner's own module, or the structure an export was made from
        twin = (runtime.module if runtime.module is not None
                else build_structure(runtime.spec, runtime.meta.get("optimization", {})))
        x = runtime.spec.preprocessing(torch.rand(args.batch, 3, h, w, generator=torch.Generator().manual_seed(0)))
        flops, _ = count_flops(twin.float(), x[:1].contiguous())
        t = time_callable(runtime, x, warmup=args.warmup, repeats=args.repeats)
        name = Path(text).name  # file name with any @options
        backend = runtime.backend + ("+compile" if runtime.compiled else "")
        weights = backend_of(path).files(path)[0]  # an OpenVINO IR's .bin, else the file itself
        rows.append(BenchRow(name, backend, runtime.precision, t.median_ms, t.p90_ms, t.images_per_s,
                             gflop=flops / 1e9, peak_gflops=peak_for(peaks, runtime.precision),
                             size_mb=weights.stat().st_size / 2**20))
        if args.progress:
            print(f"{name}: {t.median_ms:.1f} ms", flush=True)
    base = rows[0].median_ms
    for r in rows:
        r.speedup = base / r.median_ms
    print(f"\nbatch {args.batch} x {h}x{w}, {args.threads} threads, {args.warmup} warm-up, "
          f"{args.repeats} repeats (speedup vs the first model)")
    print(format_table(rows))
    plot_rows(rows, chart, title=f"fcnkit bench: {h}x{w}, batch {args.batch}, {args.threads} threads")
    print(f"wrote {chart}")
    if args.json:
        atomic_write_text(args.json, json.dumps({"size": [h, w], "batch": args.batch, "threads": args.threads,
                                                 "peaks": peaks, "rows": [r.to_dict() for r in rows]}, indent=1))
        print(f"wrote {args.json}")
    return 0
