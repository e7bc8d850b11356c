"""``fcnkit predict`` and ``fcnkit eval``: one process vs 2 torchrun ranks on this machine.

Both sides run the same command line on the same inputs in the same run (one process
with all cores as intra-op threads; 2 ranks with the cores split between them), with
the wall time of the whole command, start-up included, as a user sees it. The outputs
of both predict runs are compared byte for byte and both eval reports' metrics.

    .venv/bin/python benchmarks/distributed.py            # the 101 CamVid val frames, camvid-fcn8s-lite0
    .venv/bin/python benchmarks/distributed.py --images 48 --repeats 1

Writes benchmarks/results/distributed.md. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAMVID = ROOT.parent / "shared" / "data" / "camvid"


def _run(nproc: int, threads: int | None, *args: str) -> float:
    launcher = ([sys.executable, "-m", "fcnkit"] if nproc == 1 else
                [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                 "-m", "fcnkit"])
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    t = time.perf_counter()
    proc = subprocess.run([*launcher, *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} with {nproc} process(es) failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="camvid-fcn8s-lite0")
    ap.add_argument("--images", type=int, default=101)
    ap.add_argument("--repeats", type=int, default=2, help="runs per setup; the fastest counts")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "distributed.md")
    args = ap.parse_args()
    frames = sorted((CAMVID / "val").glob("*.png"))[: args.images]
    rows, same = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "in"
        inputs.mkdir()
        for f in frames:
            (inputs / f.name).symlink_to(f)
        cores = os.cpu_count() or 1
        setups = [(1, cores), (1, cores // 2), (2, cores // 2)]  # the middle one: a rank's thread count, alone
        for nproc, threads in setups:
            out = Path(tmp) / f"predict{nproc}-{threads}"
            seconds = min(_run(nproc, threads, "predict", args.model, str(inputs), "--out", str(out), "--workers",
                               "0", "--quiet", "--overwrite") for _ in range(args.repeats))
            rows.append(("predict", nproc, threads, len(frames), seconds))
            same[("predict", nproc, threads)] = _files(out)
        for nproc, threads in setups:
            out = Path(tmp) / f"eval{nproc}-{threads}"
            seconds = min(_run(nproc, threads, "eval", args.model, "--data", f"camvid:{CAMVID}", "--max-samples",
                               str(args.images), "--workers", "0", "--out", str(out), "--quiet")
                          for _ in range(args.repeats))
            rows.append(("eval", nproc, threads, len(frames), seconds))
            same[("eval", nproc, threads)] = json.loads((out / "metrics.json").read_text())
    base = {cmd: n / s for cmd, p, t, n, s in rows if (p, t) == setups[0]}
    lines = [f"# One process vs 2 torchrun ranks ({args.model}, {len(frames)} CamVid val frames 360x480, "
             f"{cores} cores)", "",
             f"Seconds are the whole command (start-up, model loading and writing included), the fastest of "
             f"{args.repeats} runs.", "",
             "| command | processes | threads each | seconds | images/s | vs 1 process, all cores |",
             "| --- | --- | --- | --- | --- | --- |"]
    for cmd, nproc, threads, n, s in rows:
        lines.append(f"| {cmd} | {nproc} | {threads} | {s:.1f} | {n / s:.2f} | {n / s / base[cmd]:.2f}x |")
    one, ranks, wide = (1, cores // 2), (2, cores // 2), (1, cores)
    cm = lambda key: same[("eval", *key)]["confusion_matrix"]  # noqa: E731
    flipped = sum(abs(a - b) for ra, rb in zip(cm(wide), cm(ranks)) for a, b in zip(ra, rb)) // 2
    lines += ["", "Equality of the 2-rank run with one process at the same threads per process:",
              f"- predict outputs byte-identical: {same[('predict', *ranks)] == same[('predict', *one)]}",
              f"- eval confusion matrix identical: {cm(ranks) == cm(one)}", "",
              f"Against one process with all {cores} cores as threads, float sums run in another order: "
              f"{flipped} of {same[('eval', *wide)]['pixels']:,} scored pixels change class; mean IU "
              f"{100 * same[('eval', *wide)]['mean_iu']:.3f} vs {100 * same[('eval', *ranks)]['mean_iu']:.3f}."]
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
