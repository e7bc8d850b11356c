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



def _svd_rank(text: str) -> str:
    if text == "auto" or all(part.isdigit() and int(part) > 0 for part in text.split(",")):
        return text
    raise argparse.ArgumentTypeError(f"--svd-rank takes a positive rank, 'fc6,fc7' ranks or 'auto', not {text!r}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("optimize", help="int8 / bf16 / SVD / compiled variants, kept only if mean IU holds",
                       description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="saved model or training checkpoint")
    p.add_argument("--backend", choices=["onnxruntime", "openvino", "torch"], default="openvino")
    p.add_argument("--precision", choices=["fp32", "bf16", "int8"], default="fp32")
    p.add_argument("--val", required=True, help="validation data spec, e.g. camvid:/data/camvid (val split)")
    p.add_argument("--calib", default=None, help="calibration data spec for int8 (train split)")
    p.add_argument("--val-split", default="val")
    p.add_argument("--calib-split", default="train")
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
    p.add_argument("--compile", action="store_true", help="torch backend: run through torch.compile")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all cores)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=None, help="output path (default next to the checkpoint)")
    p.set_defaults(func=_optimize)


def _optimize(args: argparse.Namespace) -> int:
    import torch

    from ..export import optimize as opt
    from ..export.bench import format_table
    from ..models.saved import load_model
    from ..profile import count_flops

    if args.precision == "int8" and not args.calib:
        raise ValueError("--precision int8 needs --calib DATA (real images to calibrate activation ranges)")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, not {args.limit}")
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.checkpoint)
    print(f"loading {args.val} ({args.val_split}) ...", flush=True)
    samples = opt.load_samples(args.val, args.val_split, model.preprocessing, limit=args.limit)
    calib = None
    if args.precision == "int8":
        calib = [s.image for s in opt.load_samples(args.calib, args.calib_split, model.preprocessing,
                                                   limit=args.calib_limit)]
    reference = opt.Reference.of(model, samples)
    print(f"fp32 model: mean IU {reference.mean_iu:.2f} on {len(samples)} {args.val_split} images", flush=True)

    svd = spectra = None
    # with two lossy steps, the SVD rank search and NNCF's accuracy control each get half the budget
    budget = args.max_drop / 2 if (args.svd_rank or args.svd_energy) and args.precision != "fp32" else args.max_drop
    if args.svd_rank or args.svd_energy:
        spectra = opt.svd_spectra(model)
        if args.svd_energy:
            svd = opt.ranks_for_energy(spectra, args.svd_energy)
        elif args.svd_rank == "auto":
            svd = opt.choose_svd_rank(model, samples, reference, budget, spectra=spectra)
        else:
            ranks = [int(r) for r in args.svd_rank.split(",")]
            svd = dict(zip(spectra, ranks * 2 if len(ranks) == 1 else ranks))
        print(f"svd ranks {svd}", flush=True)

    out_dir = (args.out or args.checkpoint).resolve().parent
    with opt.staging_dir(out_dir) as work:
        variant = opt.build_variant(model, backend=args.backend, precision=args.precision, workdir=work,
                                    calibration=calib, svd=svd, spectra=spectra, fold_bn=not args.no_fold_bn,
                                    compile=args.compile, threads=args.threads,
                                    accuracy_control=(samples, budget) if args.accuracy_control else None)
        flops, _ = count_flops(variant.torch_model, samples[0].image)
        row = opt.measure(variant, samples, reference, warmup=args.warmup, repeats=args.repeats, flops=flops)
        print(format_table([row]))
        try:
            opt.check_budget(row, args.max_drop)
        except opt.BudgetExceeded as e:
            print(f"fcnkit optimize: {e}", file=sys.stderr)
            return 3
        out = args.out or opt.default_output(args.checkpoint, variant)
        results = {k: v for k, v in row.to_dict().items() if k not in ("name", "backend", "precision")}
        results.update(val=f"{args.val} ({args.val_split}, {len(samples)} images)", fp32_mean_iu=reference.mean_iu)
        opt.write_variant(variant, out, results)
    print(f"wrote {out}")
    return 0
