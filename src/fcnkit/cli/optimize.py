"""``fcnkit optimize CHECKPOINT --backend B --precision P --val DATA``: a faster model, or a refusal.

Builds the variant (BN folding, optional truncated-SVD of fc6/fc7, backend
conversion, bf16 or int8 calibrated on ``--calib``), measures latency, size and
the mean-IU change against the fp32 model on ``--val``, and writes it only if the
drop is within ``--max-drop`` points.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_overwrite, add_quiet, examples, refuse_existing


def _svd_rank(text: str) -> str:
    if text == "auto" or all(part.isdigit() and int(part) > 0 for part in text.split(",")):
        return text
    raise argparse.ArgumentTypeError(f"--svd-rank takes a positive rank, 'fc6,fc7' ranks or 'auto', not {text!r}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("optimize", help="int8 / bf16 / SVD / compiled variants, kept only if mean IU holds",
                       description=__doc__.split("\n\n", 1)[1],
                       epilog=examples("fcnkit optimize camvid-fcn8s-lite0 --backend openvino --precision int8 "
                                       "--val camvid:data/camvid --calib camvid:data/camvid --out camvid-int8.xml",
                                       "fcnkit optimize runs/camvid_lite0/best.pt --backend torch --precision bf16 "
                                       "--val camvid:data/camvid"))
    p.add_argument("checkpoint", type=Path, help="saved model or training checkpoint")
    p.add_argument("--backend", choices=["auto", "onnxruntime", "openvino", "torch"], default="openvino",
                   help="runtime of the variant; auto: build, score and time every backend (with --precision "
                        "auto: every precision too) and write the fastest within --max-drop, with a report")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "int8"], default="fp32",
                   help="int8 needs --calib; auto: every precision of the backend, measured")
    p.add_argument("--val", required=True, help="validation data spec, e.g. camvid:/data/camvid (val split)")
    p.add_argument("--calib", default=None, help="calibration data spec for int8 (train split)")
    p.add_argument("--val-split", default="val", help="split of --val that judges the variant")
    p.add_argument("--calib-split", default="train", help="split of --calib that calibrates int8")
    p.add_argument("--limit", type=int, default=None, help="use the first N validation images")
    p.add_argument("--calib-limit", type=int, default=32, help="calibration images (default 32)")
    p.add_argument("--max-drop", type=float, default=1.0, help="refuse if mean IU drops by more points (default 1)")
    svd = p.add_mutually_exclusive_group()
    svd.add_argument("--svd-rank", type=_svd_rank, default=None,
                     help="factorise VGG fc6/fc7 at this rank ('256', '256,1024' or 'auto': smallest rank "
                     "within the budget -- all of it for fp32, half of it otherwise)")
    svd.add_argument("--svd-energy", type=float, default=None,
                     help="factorise fc6/fc7 keeping this fraction of squared singular values (e.g. 0.9)")
    p.add_argument("--accuracy-control", action="store_true",
                   help="openvino int8: NNCF's quantize_with_accuracy_control keeps the layers costing most "
                   "mean IU in float until the drop on --val is within the budget")
    p.add_argument("--no-fold-bn", action="store_true", help="keep BatchNorm layers separate")
    p.add_argument("--subpixel", action="store_true",
                   help="run the large transposed-conv upsampling (FCN-8s upscore8) as conv + depth-to-space: the "
                        "same sums, which runtimes may quantise where they keep a transposed conv in float "
                        "(--backend auto tries both forms and keeps the faster)")
    p.add_argument("--compile", action="store_true", help="torch backend: run through torch.compile")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all cores)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs before timing")
    p.add_argument("--repeats", type=int, default=5, help="timed runs (the median is reported)")
    p.add_argument("--output", choices=("logits", "labels", "auto"), default=None,
                   help="onnxruntime/openvino: the file gives class scores (logits) or a uint8 class map with the "
                        "argmax inside the graph (labels; no probabilities, TTA or temporal filter); auto (the "
                        "default with --backend/--precision auto): labels only where measured to save 5%%, else "
                        "logits (the default with a named backend)")
    p.add_argument("--out", type=Path, default=None,
                   help="output path (default: runs/optimize/N/<model>.<variant>.<ext>, N the next free number); "
                        "with auto, the folder for the chosen file and the report")
    add_overwrite(p)
    add_quiet(p)
    p.set_defaults(func=_optimize)


def _optimize(args: argparse.Namespace) -> int:
    from ..export.bench import format_table
    from ..export.optimize import BudgetExceeded, optimize
    from ..inference.runtime import BACKENDS

    auto = "auto" in (args.backend, args.precision, args.output)
    args.output = args.output or ("auto" if auto else "logits")
    if args.out is not None:  # a file (an OpenVINO IR's .bin and .json too), or with auto a folder
        refuse_existing(*([args.out] if auto else BACKENDS[args.backend].files(args.out)), overwrite=args.overwrite)
    if auto:
        return _optimize_auto(args)
    if args.precision == "int8" and not args.calib:
        raise ValueError("--precision int8 needs --calib DATA (real images to calibrate activation ranges)")
    try:
        result = optimize(args.checkpoint, val=args.val, val_split=args.val_split, backend=args.backend,
                          precision=args.precision, calib=args.calib, calib_split=args.calib_split,
                          calib_limit=args.calib_limit, limit=args.limit, svd_rank=args.svd_rank,
                          svd_energy=args.svd_energy, max_drop=args.max_drop, accuracy_control=args.accuracy_control,
                          fold_bn=not args.no_fold_bn, subpixel=args.subpixel, compile=args.compile,
                          threads=args.threads, warmup=args.warmup, repeats=args.repeats, out=args.out, output=args.output,
                          say=(lambda m: print(m, flush=True)) if args.progress else (lambda m: None))
    except BudgetExceeded as e:
        if e.row is not None:
            print(format_table([e.row]))
        print(f"fcnkit optimize: {e}", file=sys.stderr)
        return 3
    print(format_table([result.row]))
    print(f"wrote {result.path}")
    return 0


def _optimize_auto(args: argparse.Namespace) -> int:
    from ..export.choose import format_candidates, optimize_auto
    from ..export.optimize import BudgetExceeded

    if args.svd_rank or args.svd_energy or args.accuracy_control or args.compile:
        raise ValueError("--backend/--precision auto compares the plain variants; --svd-*, --accuracy-control and "
                         "--compile go with one named backend and precision")
    say = (lambda m: print(m, flush=True)) if args.progress else (lambda m: None)
    try:
        result = optimize_auto(args.checkpoint, val=args.val, val_split=args.val_split, calib=args.calib,
                               calib_split=args.calib_split, calib_limit=args.calib_limit, limit=args.limit,
                               max_drop=args.max_drop, backend=args.backend, precision=args.precision,
                               threads=args.threads, warmup=args.warmup, repeats=args.repeats, out_dir=args.out,
                               output=args.output, say=say)
    except BudgetExceeded as e:
        print(f"fcnkit optimize: {e}", file=sys.stderr)
        return 3
    print(format_candidates(result.candidates))
    print(f"chose {result.chosen.name}: {result.chosen.row.median_ms:.1f} ms per image, mean IU "
          f"{result.chosen.row.mean_iu_change:+.2f}; wrote {result.path} and {result.report}")
    return 0
