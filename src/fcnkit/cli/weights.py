"""``fcnkit weights``: the named trained weights, usable wherever a model file is."""

from __future__ import annotations

import argparse

from .common import examples


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="list named trained weights (use a name wherever a model file goes)",
                       description="The trained models that ship with fcnkit (or download once into "
                                   "$FCNKIT_CACHE): a name works wherever a model file does.",
                       epilog=examples("fcnkit weights", "fcnkit weights camvid-fcn8s-lite0"))
    p.add_argument("name", nargs="?", help="show one entry in full")
    p.set_defaults(func=_weights)


def _weights(args: argparse.Namespace) -> int:
    from ..models.zoo import get_weights, list_weights

    if args.name:
        e = get_weights(args.name)
        where = f"packaged ({e.file})" if e.file else e.url
        for key, value in [("name", e.name), ("task", e.task), ("model", f"{e.model} on {e.encoder}"),
                           ("dataset", e.dataset), ("trained on", " + ".join(e.trained_on)), ("classes", ", ".join(e.classes)),
                           ("val metrics", ", ".join(f"{k} {v}" for k, v in e.metrics.items())
                            + (" (the train-only run of its recipe: this file saw val)" if "val" in e.trained_on else "")),
                           ("preprocessing", f"{e.preprocessing.channel_order}, mean {e.preprocessing.mean}, "
                                             f"std {e.preprocessing.std}"),
                           ("size", f"{e.size_bytes / 1e6:.1f} MB"), ("file", where), ("sha256", e.sha256),
                           ("recipe", e.recipe), ("licence", e.licence), ("notes", e.notes)]:
            print(f"{key + ':':<15} {value}")
        return 0
    print(f"{'name':<28} {'task':<13} {'model':<30} {'val':<16} {'MB':>5}")
    for name in list_weights():
        e = get_weights(name)
        key = "mean_iu" if "mean_iu" in e.metrics else next(iter(e.metrics))
        print(f"{e.name:<28} {e.task:<13} {e.model + ' / ' + e.encoder:<30} "
              f"{key + ' ' + str(e.metrics[key]):<16} {e.size_bytes / 1e6:5.1f}")
    return 0
