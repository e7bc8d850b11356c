"""``fcnkit demo``: the lesson, run (building blocks, skips, detection, optimisation)."""

from __future__ import annotations

import argparse

from .common import add_quiet, examples


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the FCN demo: building blocks, FCN-32s vs FCN-8s, detection, "
                                    "export + quantisation, report",
                       description="The lesson, run: building blocks, FCN-32s vs FCN-8s trained on the same "
                                   "budget, a detection head, export + int8 quantisation with a speed/accuracy "
                                   "ladder, and OUT/report.md.",
                       epilog=examples("fcnkit demo", "fcnkit demo --data camvid:data/camvid --out demo-camvid",
                                       "fcnkit demo transpose"))
    p.add_argument("part", nargs="?", default="all", choices=["all", "1x1", "transpose"],
                   help="'1x1' or 'transpose' show one building block only")
    p.add_argument("--data", help="train and score on a dataset spec instead of generated scenes (no building "
                                  "blocks, no detection), e.g. camvid:../shared/data/camvid")
    p.add_argument("--out", default="demo-out", help="output folder (default demo-out)")
    p.add_argument("--encoder", help="encoder of the demo models (default resnet18)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and budgets (for tests)")
    add_quiet(p)
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from ..demo.blocks import demo_1x1, demo_transpose

    if args.part == "1x1":
        return 0 if demo_1x1() < 1e-5 else 1
    if args.part == "transpose":
        return 0 if demo_transpose() else 1
    from dataclasses import replace

    from ..demo.pipeline import QUICK, DemoPlan, run_demo

    plan = QUICK if args.quick else DemoPlan()
    if args.data and not args.quick:
        plan = replace(plan, size=(240, 320), seg_iters=300, n_val=101)
    if args.encoder:
        plan = replace(plan, encoder=args.encoder)
    run_demo(args.out, data=args.data, plan=plan, progress=args.progress)
    return 0
