"""Start-up time of the ``fcnkit`` command: ``--help``, ``--version`` and every ``COMMAND --help``.

Each row runs ``python -m fcnkit ARGS`` in a fresh interpreter ``--repeats`` times and
prints the median wall time, and whether torch was imported (the one thing that makes
start-up slow). Rows are interleaved round-robin so a noisy neighbour hurts all alike.

    .venv/bin/python benchmarks/cli_startup.py
    .venv/bin/python benchmarks/cli_startup.py --repeats 1     # smoke
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

ROWS = [["--help"], ["--version"], *([c, "--help"] for c in (
    "models", "info", "weights", "demo", "export", "train", "eval", "predict", "serve", "data", "data check",
    "data stats", "data fetch", "optimize", "bench"))]
# runs the CLI as `python -m fcnkit` does, then reports whether torch got imported
PROBE = ("import runpy, sys\nsys.argv = ['fcnkit', *sys.argv[1:]]\ntry:\n    runpy.run_module('fcnkit', "
         "run_name='__main__', alter_sys=True)\nexcept SystemExit:\n    pass\n"
         "print('TORCH', 'torch' in sys.modules, file=sys.stderr)")


def _args(row: list[str]) -> list[str]:
    return [a for part in row for a in part.split()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    times: dict[str, list[float]] = {" ".join(r): [] for r in ROWS}
    for _ in range(args.repeats):
        for row in ROWS:
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "fcnkit", *_args(row)], capture_output=True)
            times[" ".join(row)].append(time.perf_counter() - t)
    print(f"{'fcnkit ...':<20} {'median s':>9} {'max s':>7}  torch imported")
    for row in ROWS:
        run = subprocess.run([sys.executable, "-c", PROBE, *_args(row)], capture_output=True, text=True)
        torch = "TORCH True" in run.stderr
        ts = times[" ".join(row)]
        print(f"{' '.join(row):<20} {statistics.median(ts):9.2f} {max(ts):7.2f}  {'yes' if torch else 'no'}")


if __name__ == "__main__":
    main()
