"""``fcnkit demo [1x1|transpose]``: the lesson, run."""

from __future__ import annotations

import argparse

from ..demo.blocks import demo_1x1, demo_transpose


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the FCN demos (building blocks)")
    p.add_argument("part", nargs="?", default="all", choices=["all", "1x1", "transpose"])
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    ok = True
    if args.part in ("all", "1x1"):
        ok &= demo_1x1() < 1e-5
    if args.part == "all":
        print()
    if args.part in ("all", "transpose"):
        ok &= demo_transpose()
    return 0 if ok else 1
