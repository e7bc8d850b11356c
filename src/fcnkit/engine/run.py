"""Training from Python: ``fcnkit.train(recipe, data=..., **overrides) -> Run``.

The same engine as ``fcnkit train`` (recipes, split expressions, probes, checkpoints,
resume), called the way Ultralytics users call ``model.train(data=...)``. The result says
where the run is and how well it did, and holds the trained model.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..config import TrainConfig, from_dict, load_recipe
from .trainer import train as train_config


@dataclass
class Run:
    """A finished (or paused) training run."""

    out_dir: Path
    status: str  # "finished", "paused" or "interrupted"
    config: TrainConfig
    model: nn.Module  # the trained model (the averaged weights with ema_decay), in eval mode
    best_metrics: dict[str, Any]  # val metrics of best.pt's epoch (fractions in [0, 1]); {} without validation
    last_metrics: dict[str, Any]  # of the last validation

    @property
    def last(self) -> Path:
        return self.out_dir / "last.pt"

    @property
    def best(self) -> Path | None:
        """best.pt, or None when nothing was validated (then ``last`` is the model)."""
        path = self.out_dir / "best.pt"
        return path if path.is_file() else None

    @property
    def history(self) -> list[dict[str, Any]]:
        """One row per epoch, as metrics.jsonl holds them."""
        path = self.out_dir / "metrics.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def train_run(recipe: str | Path | TrainConfig | None = None, *, data: str | list[str] | None = None,
              resume: bool | str | Path = False, stop_after: int | None = None, **overrides: Any) -> Run:
    """Train like ``fcnkit train``: ``recipe`` is a shipped recipe's name (``"camvid_lite0"``,
    ``fcnkit train --list-recipes``), a recipe file or a ``TrainConfig``; ``data`` replaces its
    data (``"folder:/path/to/mydata"``, or a list of specs); every other keyword overrides a
    config field, type-checked as ``--set`` is (``epochs=10, lr=1e-3, init_from="camvid-fcn8s-lite0"``).
    """
    if isinstance(recipe, TrainConfig):
        cfg = recipe
    else:
        cfg = load_recipe(recipe) if recipe is not None else TrainConfig()
    if data is not None:
        cfg = from_dict({"data": data}, base=cfg, source="data=")
    if overrides:
        cfg = from_dict(overrides, base=cfg, source="fcnkit.train")
    result = train_config(cfg, resume=resume or None, stop_after=stop_after)
    out = Path(cfg.out_dir)
    best = {}
    if (out / "best.pt").is_file():
        from ..models.saved import read_record

        best = dict(read_record(out / "best.pt")["meta"].get("val_metrics") or {})
    return Run(out_dir=out, status=result["status"], config=dataclasses.replace(cfg), model=result["model"].eval(),
               best_metrics=best, last_metrics=dict(result["metrics"] or {}))


__all__ = ["Run", "train_run"]
