"""Collect the CamVid runs into benchmarks/results/camvid.md (+ a per-class PNG).

Reads each run's metrics.jsonl (one row per epoch); the reported row is the best
validation mean IU, which is the checkpoint best.pt holds.

    .venv/bin/python benchmarks/camvid_results.py [--runs runs]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import yaml  # noqa: E402

GROUPS = {
    "pretrained encoder: the best model (ImageNet EfficientNet-Lite0, FCN-8s)": ["camvid_lite0"],
    "pretrained encoder: FCN-32s vs FCN-16s vs FCN-8s, equal 90-iteration budget":
        ["camvid_cmp_lite0_fcn32s", "camvid_cmp_lite0_fcn16s", "camvid_cmp_lite0_fcn8s"],
    "from scratch vs ImageNet-pretrained, FCN-8s on EfficientNet-Lite0, equal 90-iteration budget":
        ["camvid_cmp_lite0_fcn8s_scratch", "camvid_cmp_lite0_fcn8s"],
    "from scratch: best recipe (experiment 2)": ["camvid_long", "camvid_best"],
    "skip connections, equal 6-epoch budgets (experiment 1)": ["camvid_skip_fcn32s", "camvid_skip_fcn16s",
                                                               "camvid_skip_fcn8s"],
    "staged 32s->16s->8s, 2+2+2 epochs (experiment 3; at-once arm = camvid_skip_fcn8s)":
        ["camvid_staged_fcn32s", "camvid_staged_fcn16s", "camvid_staged_fcn8s"],
}


def best_row(run: Path) -> dict | None:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    scored = [r for r in rows if r.get("val_mean_iu") is not None]
    if not scored:
        return None
    best = max(scored, key=lambda r: r["val_mean_iu"])
    best["epochs_run"] = rows[-1]["epoch"]
    best["train_minutes"] = rows[-1]["elapsed_seconds"] / 60
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="runs")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    runs, out = Path(args.runs), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# CamVid results (val split, 101 images; pretrained encoders first, then from scratch)", "",
             "Hardware: 2 CPU cores (AVX-512, bf16), no GPU, shared with other work while training. "
             "Metrics are the paper's four from one confusion matrix over the val split (void ignored); "
             "each row is the run's best validation epoch (= its best.pt). Reproduce a row with "
             "`fcnkit train --config configs/<recipe>.yaml`, or all with `bash benchmarks/camvid_experiments.sh`.", ""]
    classes, per_class = None, {}
    for title, names in GROUPS.items():
        lines += [f"## {title}", "", "| recipe | model | encoder | epochs | best epoch | pixel acc | mean acc | "
                  "mean IU | fw IU | train min |", "|---|---|---|---|---|---|---|---|---|---|"]
        for name in names:
            row = best_row(runs / name)
            if row is None:
                lines.append(f"| {name} | (not run) | | | | | | | | |")
                continue
            cfg = yaml.safe_load((Path("configs") / f"{name}.yaml").read_text())
            lines.append(f"| {name} | {cfg['model']} | {cfg['encoder']} | {row['epochs_run']} | {row['epoch']} | "
                         f"{100 * row['val_pixel_acc']:.1f} | {100 * row['val_mean_acc']:.1f} | "
                         f"**{100 * row['val_mean_iu']:.1f}** | {100 * row['val_fw_iu']:.1f} | "
                         f"{row['train_minutes']:.0f} |")
            classes = list(row["val_class_iu"])
            per_class[name] = row["val_class_iu"]
        lines.append("")
    if classes:
        lines += ["## Per-class IoU (best epoch)", "", "| recipe | " + " | ".join(classes) + " |",
                  "|---|" + "---|" * len(classes)]
        for name, iu in per_class.items():
            lines.append(f"| {name} | " + " | ".join(f"{100 * (v if v is not None else float('nan')):.1f}"
                                                      for v in iu.values()) + " |")
        fig, ax = plt.subplots(figsize=(12, 4))
        width = 0.8 / len(per_class)
        for i, (name, iu) in enumerate(per_class.items()):
            ax.bar([c + i * width for c in range(len(classes))], [100 * (v or 0) for v in iu.values()], width,
                   label=name)
        ax.set_xticks([c + 0.4 - width / 2 for c in range(len(classes))], classes, rotation=30)
        ax.set_ylabel("val IoU (%)")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(out / "camvid_per_class.png", dpi=100)
        lines += ["", "![per-class IoU](camvid_per_class.png)", ""]
    (out / "camvid.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
