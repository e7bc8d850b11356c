"""PNG reports a person would rather look at than read: confusion matrix, per-class
IoU bars, learning curves. matplotlib with the Agg backend (no display needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ..io import atomic_write  # noqa: E402


def _save(fig, path: str | Path) -> None:
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)


def plot_confusion(hist: torch.Tensor, classes: Sequence[str], path: str | Path) -> None:
    """Row-normalised ``hist[gt, pred]``: each row shows where a true class's pixels went."""
    h = hist.double().cpu().numpy()
    rows = h.sum(1, keepdims=True)
    norm = np.divide(h, rows, out=np.zeros_like(h), where=rows > 0)
    n = len(classes)
    size = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=60, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title("confusion matrix (rows normalised)")
    if n <= 25:
        for i in range(n):
            for j in range(n):
                if norm[i, j] >= 0.005:
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    _save(fig, path)


def plot_class_iou(class_iu: Sequence[float], classes: Sequence[str], path: str | Path, *,
                   title: str = "per-class IoU") -> None:
    """Horizontal bars of IoU per class; classes with undefined IoU are marked n/a."""
    n = len(classes)
    vals = [0.0 if math.isnan(v) else v for v in class_iu]
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.35 * n + 1)))
    ax.barh(range(n), vals, color="#3b7dd8")
    for i, v in enumerate(class_iu):
        ax.text((0 if math.isnan(v) else v) + 0.01, i, "n/a" if math.isnan(v) else f"{100 * v:.1f}", va="center",
                fontsize=8)
    ax.set_yticks(range(n), classes)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("IoU (bars: fraction; labels: percent)")
    mean = np.nanmean(np.array(class_iu, dtype=float)) if any(not math.isnan(v) for v in class_iu) else float("nan")
    ax.set_title(f"{title} (mean {100 * mean:.1f}%)")
    _save(fig, path)


VAL_CURVES = (("val_mean_iu", "mean IU", "o"), ("val_pixel_acc", "pixel acc", "."), ("val_map", "mAP", "s"),
              ("val_map_50", "AP50", "."))  # those a run measured are drawn


def plot_curves(rows: Sequence[dict], path: str | Path) -> None:
    """Training loss and the validation scores the rows hold (mean IU and pixel accuracy,
    mAP and AP50) against epoch."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    ep = [r["epoch"] for r in rows if r.get("train_loss") is not None]
    ax1.plot(ep, [r["train_loss"] for r in rows if r.get("train_loss") is not None], marker=".")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("train loss")
    for key, label, marker in VAL_CURVES:
        val = [r for r in rows if r.get(key) is not None]
        if val:
            ax2.plot([r["epoch"] for r in val], [r[key] for r in val], marker=marker, label=label)
    ax2.set_xlabel("epoch")
    ax2.set_ylim(0, 1)
    if ax2.lines:
        ax2.legend()
    ax2.set_title("validation")
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _save(fig, path)


__all__ = ["plot_class_iou", "plot_confusion", "plot_curves"]
