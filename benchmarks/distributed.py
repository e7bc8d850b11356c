"""``fcnkit predict`` and ``fcnkit eval``: one process vs 2 torchrun ranks on this machine.

Both sides run the same command line on the same inputs in the same run (one process
with all cores as intra-op threads; 2 ranks with the cores split between them), with
the wall time of the whole command, start-up included, as a user sees it. The outputs
of both predict runs are compared byte for byte and both eval reports' metrics.

    .venv/bin/python benchmarks/distributed.py            # 48 CamVid val frames, camvid-fcn8s-lite0
    .venv/bin/python benchmarks/distributed.py --images 101

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


def _run(nproc: int, *args: str) -> float:
    launcher = ([sys.executable, "-m", "fcnkit"] if nproc == 1 else
                [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                 "-m", "fcnkit"])
    t = time.perf_counter()
    proc = subprocess.run([*launcher, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} with {nproc} process(es) failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="camvid-fcn8s-lite0")
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "distributed.md")
    args = ap.parse_args()
    frames = sorted((CAMVID / "val").glob("*.png"))[: args.images]
    rows, same = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "in"
        inputs.mkdir()
        for f in frames:
            (inputs / f.name).symlink_to(f)
        for nproc in (1, 2):
            out = Path(tmp) / f"predict{nproc}"
            seconds = _run(nproc, "predict", args.model, str(inputs), "--out", str(out), "--workers", "0", "--quiet")
            rows.append(("predict", nproc, len(frames), seconds))
            same.setdefault("predict", []).append(_files(out))
        for nproc in (1, 2):
            out = Path(tmp) / f"eval{nproc}"
            seconds = _run(nproc, "eval", args.model, "--data", f"camvid:{CAMVID}", "--max-samples",
                           str(args.images), "--workers", "0", "--out", str(out), "--quiet")
            rows.append(("eval", nproc, len(frames), seconds))
            metrics = json.loads((out / "metrics.json").read_text())
            same.setdefault("eval", []).append({k: metrics[k] for k in ("confusion_matrix", "mean_iu")})
    base = {cmd: n / s for cmd, p, n, s in rows if p == 1}
    lines = [f"# One process vs 2 torchrun ranks ({args.model}, {len(frames)} CamVid val frames 360x480, "
             f"{os.cpu_count()} cores)", "",
             "| command | processes | threads each | seconds (whole command) | images/s | vs 1 process |",
             "| --- | --- | --- | --- | --- | --- |"]
    for cmd, nproc, n, s in rows:
        threads = (os.cpu_count() or 1) // nproc
        lines.append(f"| {cmd} | {nproc} | {threads} | {s:.1f} | {n / s:.2f} | {n / s / base[cmd]:.2f}x |")
    lines += ["", f"predict outputs byte-identical: {same['predict'][0] == same['predict'][1]}; "
                  f"eval confusion matrix and mean IU identical: {same['eval'][0] == same['eval'][1]}"]
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
