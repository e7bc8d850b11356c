"""What a run directory records: config, environment, per-epoch metrics, curves.

``config.yaml`` (resolved), ``environment.json`` (package versions, git revision,
command line), ``metrics.jsonl`` (one row per epoch, appended), ``metrics.csv``
(the same rows' scalar columns, rewritten), ``curves.png``, and TensorBoard events
when ``tensorboard`` is installed. Only rank 0 writes.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from ..config import TrainConfig, save_config
from ..io import atomic_write_text
from .plots import plot_curves
from .runtime import cpu_model

CSV_COLUMNS = ["epoch", "iteration", "lr", "train_loss", "images_per_s", "epoch_seconds", "val_seconds",
               "elapsed_seconds", "val_pixel_acc", "val_mean_acc", "val_mean_iu", "val_fw_iu"]


def git_revision() -> str | None:
    """``<sha>`` (``+dirty`` with local changes) of the checkout fcnkit runs from, if any."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "")


def environment(**extra: Any) -> dict[str, Any]:
    versions = {}
    for pkg in ("fcnkit", "torch", "torchvision", "numpy", "pillow", "pyyaml"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "cpu": cpu_model(), "packages": versions,
            "git_revision": git_revision(), "argv": sys.argv, **extra}


def write_run_info(out_dir: str | Path, cfg: TrainConfig, *, resumed_at: int | None = None, **extra: Any) -> None:
    """``config.yaml`` (the config now in force) and ``environment.json``; a resumed run
    adds ``environment-resume-<iteration>.json`` so the original record is kept."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    name = "environment.json" if resumed_at is None else f"environment-resume-{resumed_at}.json"
    atomic_write_text(out / name, json.dumps(environment(**extra), indent=2, default=str) + "\n")


class RunLog:
    """Per-epoch rows to JSONL + CSV + curves.png, and scalars to TensorBoard if present."""

    def __init__(self, out_dir: str | Path, *, enabled: bool = True) -> None:
        self.out = Path(out_dir)
        self.enabled = enabled
        self.rows: list[dict] = []
        self.tb = None
        if not enabled:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        jsonl = self.out / "metrics.jsonl"
        if jsonl.is_file():  # resumed run: keep the history
            self.rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.out / "tensorboard"))
        except ImportError:  # tensorboard is optional
            self.tb = None

    def truncate_after(self, epoch: int) -> None:
        """Drop rows of epochs > ``epoch`` (logged after the checkpoint we resume from)."""
        if self.enabled and any(r["epoch"] > epoch for r in self.rows):
            self.rows = [r for r in self.rows if r["epoch"] <= epoch]
            atomic_write_text(self.out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.rows))

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.tb is not None:
            self.tb.add_scalar(tag, value, step)

    def epoch(self, row: dict) -> None:
        if not self.enabled:
            return
        self.rows.append(row)
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.out / "metrics.csv", buf.getvalue())
        plot_curves(self.rows, self.out / "curves.png")
        for key in CSV_COLUMNS[2:]:
            if row.get(key) is not None:
                self.scalar(f"epoch/{key}", row[key], row["epoch"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


__all__ = ["CSV_COLUMNS", "RunLog", "environment", "git_revision", "write_run_info"]
