"""Run each test file in its own pytest process and add up the results, two files at a time.

Why one process per file: some native libraries (OpenVINO, ONNX Runtime, oneDNN thread
pools) leave process state behind; after a long mixed session one of them crashed the
shared pytest process with a segfault at a later, unrelated subprocess call. One process
per file keeps each file's state to itself, and a crash is reported as that file's
failure instead of ending the whole run.

Why lanes: much of a test file's time is single-threaded (imports, subprocesses, image
I/O, exports), so two files side by side, each with half the cores for its intra-op
threads, keep both cores busy. The slowest files start first so no lane is left with a
long file at the end. ``FCNKIT_TEST_LANES=1`` runs them one by one with all the cores.

    python tests/run_isolated.py [pytest args...]
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

COUNTS = re.compile(r"(\d+) (passed|failed|skipped|error|errors|deselected)")
# the longest files (measured on 2 cores), started first; any other file follows by name
SLOW_FIRST = ("test_readme.py", "test_export.py", "test_optimize.py", "test_redteam_serve.py", "test_demo.py",
              "test_serve.py", "test_distributed_inference.py", "test_detection_train.py", "test_train.py",
              "test_redteam_metadata.py", "test_extras.py")


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _order(files: list[Path]) -> list[Path]:
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    return sorted(files, key=lambda f: (rank.get(f.name, len(rank)), f.name))


def _run(f: Path, env: dict[str, str]) -> tuple[Path, subprocess.CompletedProcess]:
    return f, subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(f), *sys.argv[1:]],
                             capture_output=True, text=True, env=env)


def main() -> int:
    files = _order(list(Path(__file__).parent.glob("test_*.py")))
    lanes = max(1, int(os.environ.get("FCNKIT_TEST_LANES", min(2, _cores()))))
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    broken = []
    start = time.perf_counter()
    cache = tempfile.TemporaryDirectory(prefix="fcnkit-test-cache-")  # weights and probe caches of this run
    env = {**os.environ, "FCNKIT_CACHE": cache.name}
    if lanes > 1 and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, _cores() // lanes))
    print(f"{len(files)} test files, {lanes} at a time", flush=True)
    with ThreadPoolExecutor(lanes) as pool:
        for done in as_completed([pool.submit(_run, f, env) for f in files]):
            f, run = done.result()
            tail = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
            found = {kind: int(n) for n, kind in COUNTS.findall(tail)}
            totals["passed"] += found.get("passed", 0)
            totals["skipped"] += found.get("skipped", 0)
            failed = found.get("failed", 0) + found.get("error", 0) + found.get("errors", 0)
            if run.returncode not in (0, 5) and failed == 0:
                failed = 1  # crashed or could not run: count the file as one failure
            totals["failed"] += failed
            print(f"{f.name:<32} {tail or f'exit {run.returncode}'}", flush=True)
            if run.returncode not in (0, 5):
                broken.append(f.name)
                print(run.stdout[-6000:], run.stderr[-3000:], sep="\n", flush=True)
    print(f"\n{len(files)} files in {time.perf_counter() - start:.0f} s"
          + (f"; failing: {', '.join(broken)}" if broken else ""))
    print(f"{totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped")
    return 1 if totals["failed"] or totals["passed"] == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
