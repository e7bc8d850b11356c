"""An evaluation's files: ``metrics.json`` that any JSON reader accepts, and its plots.

Kept apart from the scorer (``fcnkit.engine.evaluate``) because only ``fcnkit eval``
writes reports; train-time validation keeps its numbers in the run's metrics files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..io import atomic_write_text
from .plots import plot_class_iou, plot_confusion

if TYPE_CHECKING:
    from .evaluate import Evaluation

METRIC_UNITS = "fractions in [0, 1]; fcnkit eval prints them as percent"  # metrics.json's "units"


def write_report(ev: Evaluation, classes: list[str], out_dir: str | Path, **info: Any) -> dict:
    """``metrics.json`` (atomic) and, for masks, ``confusion.png`` and ``class_iou.png``.
    Scores are fractions in [0, 1] (``fcnkit eval`` prints them as percent)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = ev.metrics
    report = {**info, "units": METRIC_UNITS, "classes": classes, **metrics}
    if ev.confusion is not None:
        report["class_iu_by_name"] = dict(zip(classes, metrics["class_iu"]))
        report["confusion_matrix"] = ev.confusion.hist.cpu().tolist()
    atomic_write_text(out / "metrics.json", json.dumps(_nan_to_none(report), indent=2, allow_nan=False) + "\n")
    if ev.confusion is not None:
        plot_confusion(ev.confusion.hist, classes, out / "confusion.png")
        plot_class_iou(metrics["class_iu"], classes, out / "class_iou.png")
    return report


def _nan_to_none(x: Any) -> Any:
    """Undefined values (NaN) become JSON null, so any JSON reader accepts the file."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return x


__all__ = ["METRIC_UNITS", "write_report"]
