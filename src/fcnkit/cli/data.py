"""``fcnkit data check|stats|fetch``: validate a dataset, class weights, downloads."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..heads import SEG
from .common import add_quiet, examples


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="check a dataset, compute class weights, download public datasets",
                       description="Check a dataset for every problem, count its classes, or download one.",
                       epilog=examples("fcnkit data check data/camvid", "fcnkit data stats data/camvid --out w.json",
                                       "fcnkit data fetch camvid --to data"))
    cmds = p.add_subparsers(dest="data_command", required=True, metavar="{check,stats,fetch}")

    c = cmds.add_parser("check", help="report counts, sizes, class histogram and every problem (read-only)",
                        description="Count images, sizes and class pixels (or boxes) and list every problem with "
                                    "the file it concerns; never writes into the dataset. Exit 1 if any.",
                        epilog=examples("fcnkit data check data/camvid",
                                        "fcnkit data check voc_xml:data/raccoon --split val --max-errors 10"))
    c.add_argument("path", help="dataset folder, or FORMAT:PATH")
    c.add_argument("--format", dest="fmt", help="dataset format (default: recognised from the layout)")
    c.add_argument("--split", action="append", help="check only this split (repeatable; default: all present)")
    c.add_argument("--max-errors", type=int, default=50, help="problems to list (all are counted)")
    add_quiet(c)
    c.set_defaults(func=_check)

    s = cmds.add_parser("stats", help="class frequencies and median-frequency-balancing weights (SegNet)",
                        description="Per-class pixel frequencies of a segmentation split and median-frequency "
                                    "weights for training's class_weights.",
                        epilog=examples("fcnkit data stats data/camvid --out camvid_weights.json",
                                        "fcnkit data stats cityscapes:data/cityscapes --split train --quiet"))
    s.add_argument("path", help="dataset folder, or FORMAT:PATH")
    s.add_argument("--format", dest="fmt", help="dataset format (default: recognised from the layout)")
    s.add_argument("--split", default="train", help="split to count (default: train)")
    s.add_argument("--out", type=Path, help="write the statistics as JSON here (for training's class_weights)")
    add_quiet(s)
    s.set_defaults(func=_stats)

    f = cmds.add_parser("fetch", help="download, verify and unpack a public dataset",
                        description="Download (resuming a partial download), verify the checksum and unpack.",
                        epilog=examples("fcnkit data fetch camvid --to data",
                                        "fcnkit data fetch voc2012 --to data --keep-archive"))
    from ..data.fetch import SOURCES

    f.add_argument("name", choices=sorted(SOURCES), metavar="NAME",
                   help="one of " + "; ".join(f"{k} ({v.note})" for k, v in SOURCES.items()))
    f.add_argument("--to", type=Path, required=True, help="folder to download and unpack into")
    f.add_argument("--url", help="download from this mirror instead")
    f.add_argument("--checksum", help="expected md5:<hex> or sha256:<hex> (overrides the built-in one)")
    f.add_argument("--keep-archive", action="store_true", help="keep the archive after unpacking")
    add_quiet(f)
    f.set_defaults(func=_fetch)


def _spec(args: argparse.Namespace) -> str:
    return f"{args.fmt}:{args.path}" if args.fmt else args.path


def _check(args: argparse.Namespace) -> int:
    from ..data.check import check_dataset

    report = check_dataset(_spec(args), splits=args.split, progress=args.progress)
    print(report.format_text(max_errors=args.max_errors))
    return 0 if report.ok else 1


def _stats(args: argparse.Namespace) -> int:
    from ..data.formats import build_dataset
    from ..data.stats import class_statistics, write_json
    from ..io import check_output_file

    if args.out:  # before reading every label
        check_output_file(args.out, suffixes=(".json",), what="statistics file")
    ds = build_dataset(_spec(args), args.split)
    if SEG not in ds.heads:
        raise ValueError(f"{args.path}: class pixel statistics need a segmentation dataset (with masks); this one has only boxes")
    stats = class_statistics(ds, progress=args.progress)
    print(f"{len(ds)} images ({args.split}), median frequency {stats['median_frequency']:.4f}")
    print(f"  {'class':<20} {'pixels':>12} {'freq':>8} {'weight':>8}")
    for name, n, fr, w in zip(stats["classes"], stats["pixels"], stats["frequency"], stats["class_weights"]):
        print(f"  {name:<20} {n:>12,} {fr:8.4f} {w:8.4f}")
    print(f"  {'(ignored)':<20} {stats['ignored_pixels']:>12,}")
    if args.out:
        stats["source"] = {"dataset": str(args.path), "format": args.fmt, "split": args.split}
        write_json(stats, args.out)
        print(f"wrote {args.out}")
    else:
        json.dump({"class_weights": stats["class_weights"]}, sys.stdout)
        print()
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from ..data.fetch import SOURCES, fetch

    unpacked, digest = fetch(args.name, args.to, url=args.url, checksum=args.checksum,
                             progress=args.progress, keep_archive=args.keep_archive)
    verified = args.checksum or SOURCES[args.name].checksum
    print(f"{'verified' if verified else 'no published checksum; computed'} {digest}")
    for path in unpacked:
        print(f"unpacked {path}")
    return 0
