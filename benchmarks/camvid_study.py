"""The CamVid recipe study: each row is the study recipe with a few keys changed, trained on
CamVid train without sequence 0006R0 and scored on 0006R0 (a street it never saw, the
forecast of the test split) and on the official val (0016E5, a street it did see).

Rows run one after the other, each resumable (``runs/study/<row>_s<seed>/last.pt``); a
finished row is appended to ``benchmarks/results/camvid_study.jsonl`` (kept in git, so a
rerun extends the table instead of overwriting it) and the table in
``benchmarks/results/camvid.md`` is rewritten from that file. The score of a row is its
last epoch's (``last.pt``; nothing is selected on either split).

    .venv/bin/python benchmarks/camvid_study.py                     # every row, seed 0
    .venv/bin/python benchmarks/camvid_study.py ce sqrt_mf --seeds 0 1
    .venv/bin/python benchmarks/camvid_study.py --table            # only rewrite the table
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "camvid_study.jsonl"
TABLE = ROOT / "benchmarks" / "results" / "camvid.md"
HELD_OUT = "train@0006R0"  # the sequence-disjoint split (the recipe's val_split)
WEAK = ["Pole", "SignSymbol", "Fence", "Pedestrian", "Bicyclist"]
BEGIN, END = "<!-- study:begin -->", "<!-- study:end -->"

SQRT = ["class_weight_power=0.5"]  # the best loss of the first rows (sqrt of median-frequency weights)
# name -> (what it tests, --set overrides of configs/camvid_study.yaml)
ROWS: dict[str, tuple[str, list[str]]] = {
    "base_mf": ("the shipped recipe: CE, median-frequency class weights", []),
    "ce": ("CE, no class weights", ["class_weights=null"]),
    "sqrt_mf": ("CE, square root of the median-frequency weights", ["class_weight_power=0.5"]),
    "ce_lovasz": ("CE (no weights) + Lovász-softmax", ["class_weights=null", "loss=ce+lovasz"]),
    "sqrt_lovasz": ("CE (sqrt weights) + Lovász-softmax", ["class_weight_power=0.5", "loss=ce+lovasz"]),
    "ohem": ("CE over the hardest 25% of pixels, no weights", ["class_weights=null", "loss=ohem"]),
    # from here on every row starts from the best loss of the rows above: CE with the square root of the
    # median-frequency weights (ahead of unweighted CE by 0.4 on 0006R0 and 0.6 on val, and Pole 14 vs 7)
    "fcn4s": ("sqrt weights; FCN-4s: one more skip, from the stride-4 tap", [*SQRT, "model=fcn4s"]),
    "ema": ("sqrt weights; an EMA of the weights (decay 0.999, warmed up)", [*SQRT, "ema_decay=0.999"]),
    "lite1": ("sqrt weights; EfficientNet-Lite1 encoder", [*SQRT, "encoder=efficientnet_lite1"]),
    "lite2": ("sqrt weights; EfficientNet-Lite2 encoder", [*SQRT, "encoder=efficientnet_lite2"]),
    "long": ("sqrt weights; 24 epochs instead of 12", [*SQRT, "epochs=24", "val_every=8"]),
    "scale_wide": ("sqrt weights; random scale 0.5-2.0 instead of 0.75-1.5", [*SQRT, "scale_range=[0.5,2.0]"]),
    # zoomed in: the same 360x480 crops (so the same training cost) cut from frames scaled 1-2x, and
    # inference on frames scaled 1.5x (2.25x the pixels): thin classes (poles, signs) get more pixels
    "zoom": ("sqrt weights; crops of frames scaled 1-2x, inference at 1.5x", [*SQRT, "scale_range=[1.0,2.0]"]),
}
EVAL_SCALES = {"zoom": (1.5,)}  # rows scored on rescaled frames (as fcnkit eval --scales 1.5)


def run_dir(name: str, seed: int) -> Path:
    return ROOT / "runs" / "study" / f"{name}_s{seed}"


def load_results() -> list[dict]:
    if not RESULTS.is_file():
        return []
    return [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]


def train(name: str, seed: int, data: str | None) -> Path:
    out = run_dir(name, seed)
    cmd = [sys.executable, "-m", "fcnkit", "train", "--config", "camvid_study", "--quiet",
           "--set", f"out_dir={out}", f"seed={seed}", *ROWS[name][1]]
    if data:
        cmd += ["--data", data]
    if (out / "last.pt").is_file():
        cmd.append("--resume")
    print(f"== {name} seed {seed}: {' '.join(cmd[2:])}", flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    return out


def score(out: Path, data: str, split: str, scales: tuple[float, ...] | None = None) -> dict:
    from fcnkit.inference.evaluate import evaluate_checkpoint

    report_dir = out / f"eval_{split.replace('@', '_at_').replace('!', 'not_')}"
    if (report_dir / "metrics.json").is_file():
        return json.loads((report_dir / "metrics.json").read_text())
    return evaluate_checkpoint(out / "last.pt", data, split=split, out_dir=report_dir, batch_size=4, amp="off",
                               scales=scales, progress=False)


def record(name: str, seed: int, out: Path, data: str) -> dict:
    from fcnkit.engine.runtime import cpu_model

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    env = json.loads((out / "environment.json").read_text())
    scales = EVAL_SCALES.get(name)
    held, val = score(out, data, HELD_OUT, scales), score(out, data, "val", scales)
    result = {"row": name, "seed": seed, "what": ROWS[name][0], "overrides": ROWS[name][1],
              "epochs": rows[-1]["epoch"], "train_minutes": rows[-1]["elapsed_seconds"] / 60,
              "images_per_s": sum(r["images_per_s"] for r in rows) / len(rows), "amp": env.get("amp"),
              "cpu": env.get("cpu") or cpu_model(), "git": env.get("git_revision"),
              "date": datetime.date.today().isoformat()}
    for key, report in (("held_out", held), ("val", val)):
        result[key] = {"mean_iu": report["mean_iu"], "pixel_acc": report["pixel_acc"],
                       "class_iu": dict(zip(report["classes"], report["class_iu"]))}
    return result


def pct(v: float | None) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def table(results: list[dict]) -> str:
    """Rows grouped by study row: mean over seeds first, then each seed's figures."""
    by_row: dict[str, list[dict]] = {}
    for r in results:
        by_row.setdefault(r["row"], []).append(r)
    head = ("| row | what | seeds | 0006R0 mean IU (held out) | val mean IU | "
            + " | ".join(f"{c} (0006R0 / val)" for c in WEAK) + " | min/run | img/s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, runs in sorted(by_row.items(), key=lambda kv: -mean([r["held_out"]["mean_iu"] for r in kv[1]])):
        held = [r["held_out"]["mean_iu"] for r in runs]
        val = [r["val"]["mean_iu"] for r in runs]
        spread = lambda xs: f" ({', '.join(pct(x) for x in xs)})" if len(xs) > 1 else ""  # noqa: E731
        weak = " | ".join(f"{pct(mean([r['held_out']['class_iu'][c] for r in runs]))} / "
                          f"{pct(mean([r['val']['class_iu'][c] for r in runs]))}" for c in WEAK)
        lines.append(f"| {name} | {runs[0]['what']} | {len(runs)} | **{pct(mean(held))}**{spread(held)} | "
                     f"{pct(mean(val))}{spread(val)} | {weak} | {mean([r['train_minutes'] for r in runs]):.0f} | "
                     f"{mean([r['images_per_s'] for r in runs]):.2f} |")
    cpus = sorted({r["cpu"] for r in results})
    amps = sorted({str(r["amp"]) for r in results})
    notes = (f"\nEvery row: `configs/camvid_study.yaml` with the row's `--set` keys "
             f"(`benchmarks/camvid_study.py` lists them), trained on CamVid train without sequence 0006R0 "
             f"(266 frames) and scored at its last epoch on 0006R0 (101 frames of a street never trained on) and "
             f"on val (0016E5, whose street 204 training frames share). Sorted by the held-out score, the "
             f"better forecast of the test split. CPU: {', '.join(cpus)}; autocast: {', '.join(amps)}; "
             f"2 cores.\n")
    return "\n".join(lines) + "\n" + notes


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def write_table(results: list[dict]) -> None:
    text = TABLE.read_text() if TABLE.is_file() else ""
    section = (f"{BEGIN}\n## Recipe study: train without 0006R0, score on 0006R0 and val\n\n{table(results)}{END}")
    if BEGIN in text:
        before, _, rest = text.partition(BEGIN)
        _, _, after = rest.partition(END)
        text = before + section + after
    else:
        head, sep, tail = text.partition("\n## ")
        text = head.rstrip() + "\n\n" + section + "\n\n" + (sep.lstrip("\n") + tail if sep else "")
    TABLE.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", nargs="*", help=f"rows to run (default: all): {', '.join(ROWS)}")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--data", default=None, help="camvid:PATH (default: the recipe's ../shared/data/camvid)")
    ap.add_argument("--table", action="store_true", help="only rewrite the table from the results file")
    args = ap.parse_args()
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        ap.error(f"unknown rows {unknown}; known: {', '.join(ROWS)}")
    data = args.data or f"camvid:{ROOT.parent / 'shared' / 'data' / 'camvid'}"
    if not args.table:
        for name in args.rows or list(ROWS):
            for seed in args.seeds:
                if any(r["row"] == name and r["seed"] == seed for r in load_results()):
                    print(f"== {name} seed {seed}: done", flush=True)
                    continue
                out = train(name, seed, args.data)
                result = record(name, seed, out, data)
                with open(RESULTS, "a") as f:
                    f.write(json.dumps(result) + "\n")
                print(f"== {name} seed {seed}: 0006R0 {pct(result['held_out']['mean_iu'])}, "
                      f"val {pct(result['val']['mean_iu'])}", flush=True)
                write_table(load_results())
    write_table(load_results())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
