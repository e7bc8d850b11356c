"""Shared test fixtures: where the real data lives, and tiny models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def data_dir(name: str) -> Path:
    """Path of a real dataset in ../shared/data, or skip the test saying why."""
    path = DATA_ROOT / name
    if not path.is_dir():
        pytest.skip(f"real dataset {name!r} not found at {path}")
    return path


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
