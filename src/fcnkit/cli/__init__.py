"""``fcnkit`` command line: one module per command, each with ``register(subparsers)``.

A command module adds its parser and sets ``func`` (which returns an exit code). Command
modules import torch and the library only inside ``func``, so ``fcnkit --help``,
``--version`` and ``COMMAND --help`` start in a fraction of a second.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from .common import Parser, examples

# command modules under fcnkit.cli, in the order `fcnkit --help` lists them
COMMANDS = ["models", "weights", "demo", "export", "train", "eval", "predict", "serve", "data", "optimize", "bench"]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fcnkit", description="Fully Convolutional Networks: build, train, evaluate, predict, "
                    "detect, optimise. Run 'fcnkit COMMAND --help' for a command's options and examples.",
                    epilog=examples("fcnkit weights", "fcnkit predict camvid-fcn8s-lite0 street.png",
                                    "fcnkit demo --quick"))
    parser.add_argument("--version", action="version", version=f"fcnkit {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(f"fcnkit.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        from ..extras import explain

        print(f"fcnkit {args.command}: error: {explain(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # (training saves on the first Ctrl-C itself; this is a second one, or another command)
        print(f"\nfcnkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
