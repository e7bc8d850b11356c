"""Run each test file in its own pytest process and add up the results.

Why: some native libraries (OpenVINO, ONNX Runtime, oneDNN thread pools) leave
process state behind; after a long mixed session one of them crashed the shared
pytest process with a segfault at a later, unrelated subprocess call. One process
per file keeps each file's state to itself, and a crash is reported as that file's
failure instead of ending the whole run.

    python tests/run_isolated.py [pytest args...]
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COUNTS = re.compile(r"(\d+) (passed|failed|skipped|error|errors|deselected)")


def main() -> int:
    files = sorted(Path(__file__).parent.glob("test_*.py"))
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    broken = []
    start = time.perf_counter()
    cache = tempfile.TemporaryDirectory(prefix="fcnkit-test-cache-")  # weights and probe caches of this run
    env = {**os.environ, "FCNKIT_CACHE": cache.name}
    for f in files:
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(f), *sys.argv[1:]],
                             capture_output=True, text=True, env=env)
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
