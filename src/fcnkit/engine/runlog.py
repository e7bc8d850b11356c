"""What a run directory records: config, environment, per-epoch metrics, curves.

``config.yaml`` (resolved), ``environment.json`` (package versions, git revision,
command line), ``metrics.jsonl`` (one row per epoch, appended), ``metrics.csv``
(the same rows' scalar columns, rewritten), ``curves.png``, and TensorBoard events
when ``tensorboard`` is installed. Only rank 0 writes.

The CSV's columns are the rows' own numeric keys, so whatever validation measured
(mean IU, mAP, both) gets a column. They only grow: a resumed run keeps the header
its ``metrics.csv`` already has and appends keys it has not seen (e.g. the first
validated epoch's metrics after unvalidated ones) at the end.
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

PER_EPOCH = ("epoch", "iteration")  # a row's position, not a quantity to plot over epochs


def _numeric_keys(row: dict) -> list[str]:
    """The keys of ``row`` a CSV cell (and a TensorBoard scalar) can hold: numbers, not lists or dicts."""
    return [k for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _csv_header(path: Path) -> list[str]:
    """The column names of an existing ``metrics.csv`` (none if it is missing or empty)."""
    try:
        with open(path, newline="") as f:
            return next(csv.reader(f), [])
    except OSError:
        return []


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
        self.columns: list[str] = []  # metrics.csv's, in order
        self.tb = None
        if not enabled:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        jsonl = self.out / "metrics.jsonl"
        if jsonl.is_file():  # resumed run: keep the history, and the CSV's columns
            self.rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
            self.columns = _csv_header(self.out / "metrics.csv")
            for row in self.rows:
                self._add_columns(row)
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

    def _add_columns(self, row: dict) -> None:
        self.columns += [k for k in _numeric_keys(row) if k not in self.columns]

    def epoch(self, row: dict) -> None:
        if not self.enabled:
            return
        self.rows.append(row)
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._add_columns(row)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.out / "metrics.csv", buf.getvalue())
        plot_curves(self.rows, self.out / "curves.png")
        for key in _numeric_keys(row):
            if key not in PER_EPOCH:
                self.scalar(f"epoch/{key}", row[key], row["epoch"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


__all__ = ["RunLog", "environment", "git_revision", "write_run_info"]
