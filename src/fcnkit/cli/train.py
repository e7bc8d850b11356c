"""``fcnkit train --config RECIPE [--set key=value ...] [--resume [CKPT]]``.

Under ``torchrun --nproc_per_node=N -m fcnkit train ...`` each process is one DDP
rank. Exit codes: 0 finished (or paused by ``--stop-after``), 130 stopped by
SIGINT/SIGTERM after saving ``last.pt``, 2 bad config/data or a diverged loss.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

from .common import add_quiet, examples

if TYPE_CHECKING:
    from ..config import TrainConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a segmentation, detection or joint FCN from a recipe (resumable, DDP via torchrun)",
                       description="Train an FCN. Fields of the recipe (a flat YAML file, see configs/) can be "
                                   "overridden with --set key=value; the resolved config, package versions and git "
                                   "revision are saved in the run directory (out_dir). On a terminal a progress "
                                   "bar shows each epoch; in a log, a line every log_every iterations.",
                       epilog=examples("fcnkit train --config configs/camvid_lite0.yaml",
                                       "fcnkit train --config camvid_best --set epochs=2 lr=1e-3",
                                       "fcnkit train --resume runs/camvid_lite0/last.pt"))
    p.add_argument("--config", "-c", metavar="RECIPE",
                   help="recipe: a YAML file, or the name of a shipped recipe (e.g. camvid_best; list: fcnkit "
                        "train --list-recipes); its relative data paths are relative to the recipe file")
    p.add_argument("--list-recipes", action="store_true", help="list the shipped recipes and exit")
    p.add_argument("--data", nargs="+", metavar="SPEC", default=None,
                   help="train on this data instead of the recipe's (FORMAT:PATH or PATH; several: trained "
                        "together), relative to the working folder")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config fields, e.g. --set epochs=2 lr=1e-3 (or --set repeated)")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="CKPT",
                   help="continue a run from CKPT (default: OUT_DIR/last.pt); without --config the "
                        "checkpoint's own config is used")
    p.add_argument("--stop-after", type=int, default=None, metavar="N",
                   help="run at most N iterations now, save and exit (continue later with --resume)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    add_quiet(p)
    p.set_defaults(func=_train)


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """Recipe <- --set; or, resuming without a recipe, the checkpoint's saved config <- --set
    (the checkpoint: CKPT, or last.pt in the out_dir that --set names)."""
    from ..config import from_dict, load_config, load_recipe

    if args.config is None and args.resume is not None:
        from pathlib import Path

        from ..engine.checkpoint import load_checkpoint

        path = Path(args.resume if isinstance(args.resume, str) else load_config(None, args.overrides).out_dir)
        path = path / "last.pt" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no checkpoint to resume from (give --resume CKPT, or --config / "
                                    f"--set out_dir=DIR of the run)")
        # the run goes on in the checkpoint's folder, whichever folder it is resumed from
        saved = {**load_checkpoint(path)["train_config"], "out_dir": str(path.parent)}
        base = from_dict(saved, source=f"{path}: train_config")
    else:
        base = load_recipe(args.config) if args.config is not None else None
    if getattr(args, "data", None):
        base = from_dict({"data": args.data}, base=base, source="--data")
    return load_config(None, args.overrides, base=base)


def _train(args: argparse.Namespace) -> int:
    from ..config import list_recipes

    if args.list_recipes:
        print("\n".join(list_recipes()))
        return 0
    cfg = resolve_config(args)
    if not args.progress:  # as --set progress=false --set log_every=0
        cfg = replace(cfg, progress=False, log_every=0)
    if args.print_config:
        import yaml

        sys.stdout.write(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return 0
    if args.stop_after is not None and args.stop_after < 1:
        raise ValueError(f"--stop-after must be >= 1, not {args.stop_after}")
    from ..engine import train

    result = train(cfg, resume=args.resume, stop_after=args.stop_after)
    return 130 if result["status"] == "interrupted" else 0
