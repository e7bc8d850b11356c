"""``fcnkit`` command line: one module per command, each with ``register(subparsers)``.

A command module adds its parser and sets ``func`` (which returns an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command modules under fcnkit.cli, in the order `fcnkit --help` lists them
COMMANDS = ["models", "weights", "demo", "export", "train", "eval", "predict", "serve", "data", "optimize", "bench"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fcnkit", description="Fully Convolutional Networks: "
                                     "build, train, evaluate, predict, detect, optimise.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"fcnkit.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"fcnkit {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
