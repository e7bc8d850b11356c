"""Shared test fixtures: where the real data lives, and tiny models."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

pytest_plugins = ["predict_fixtures"]  # the prediction tests' models and images (fixtures by name)

DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# the weights and probe caches of a test run are its own, not the user's (run_isolated.py shares one
# folder between its per-file processes, so a precision measured once is reused)
os.environ.setdefault("FCNKIT_CACHE", tempfile.mkdtemp(prefix="fcnkit-test-cache-"))


def data_dir(name: str) -> Path:
    """Path of a real dataset in ../shared/data, or skip the test saying why."""
    path = DATA_ROOT / name
    if not path.is_dir():
        pytest.skip(f"real dataset {name!r} not found at {path}")
    return path


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def torchrun_two_cpu_ranks(script_text: str, tmp_path: Path) -> Path:
    """Run ``script_text`` as 2 gloo ranks under torchrun with its output folder as argv[1];
    returns that folder (the test fails with the ranks' stderr if they do)."""
    script, out = tmp_path / "ddp_script.py", tmp_path / "run"
    script.write_text(script_text)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out
