"""Flicker and accuracy on real video: CamVid val is a 15 Hz drive (0016E5, 101 frames, every one labelled).

Every frame is segmented once (class probabilities kept); then each setting of the temporal
filter (``fcnkit predict --smooth M --gate G [--flow]``) replays those probabilities in frame order.
Per setting: mean IU against the labels, flicker (share of pixels changing class per frame,
``fcnkit.metrics.temporal``) next to the ground truth's own, and the time per frame:
the model's forward pass with probabilities and the filter's extra, measured in this run.

    .venv/bin/python benchmarks/video_stability.py                      # camvid-fcn8s-lite0
    .venv/bin/python benchmarks/video_stability.py --model runs/x/last.pt --limit 20
Writes benchmarks/results/video_stability.md (and prints it).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from fcnkit.data import build_dataset
from fcnkit.engine.runtime import cpu_model
from fcnkit.inference import Predictor
from fcnkit.inference.temporal import TemporalFilter
from fcnkit.metrics import ConfusionMatrix
from fcnkit.metrics.temporal import FlickerMeter

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "camvid"
SETTINGS = [(0.0, 0.1, False), (0.5, 0.1, False), (0.5, 0.2, False), (0.7, 0.1, False),  # (momentum, gate, flow)
            (0.5, 0.1, True), (0.7, 0.15, True), (0.8, 0.2, True), (0.8, 1.0, True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="camvid-fcn8s-lite0")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--limit", type=int, default=None, help="first N frames only")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "video_stability.md")
    args = ap.parse_args()

    data = build_dataset(f"camvid:{args.data}", "val")  # file order is time order
    n = min(len(data), args.limit or len(data))
    predictor = Predictor(args.model, progress=False)
    frames, labels, probs, forward_s = [], [], [], []
    for i in range(n):
        image, target = data[i]
        rgb = image.permute(1, 2, 0).numpy()  # (H, W, 3) uint8
        t0 = time.perf_counter()
        result = predictor.predict(rgb, probabilities=True)
        forward_s.append(time.perf_counter() - t0)
        frames.append(rgb)
        labels.append(torch.as_tensor(np.asarray(target["mask"])))
        probs.append(result.probabilities)
    k = predictor.spec.num_classes
    truth = FlickerMeter(k)
    for label in labels:
        truth.update(label)
    rows = []
    for momentum, gate, flow in SETTINGS:
        filt, cm, meter, filter_s = TemporalFilter(momentum, gate, flow=flow), ConfusionMatrix(k), FlickerMeter(k), 0.0
        for rgb, label, p in zip(frames, labels, probs):
            t0 = time.perf_counter()
            mask = torch.from_numpy(filt(p, rgb).argmax(0)) if momentum else torch.from_numpy(p.argmax(0))
            filter_s += time.perf_counter() - t0
            cm.update(label.long(), mask.long())
            meter.update(mask)
        rows.append((momentum, gate, flow, 100 * cm.compute()["mean_iu"], 100 * meter.scores()["flicker"],
                     1000 * filter_s / n))
    base_iu, base_flicker, base_ms = rows[0][3], rows[0][4], rows[0][5]
    forward_ms = 1000 * float(np.median(forward_s[1:] or forward_s))
    lines = [f"# Temporal stability on CamVid val as a clip ({n} frames of 0016E5, 15 Hz, {frames[0].shape[1]}x"
             f"{frames[0].shape[0]})", "",
             f"Model `{args.model}`; CPU: {cpu_model()}, {torch.get_num_threads()} threads. "
             f"Forward pass with probabilities: median {forward_ms:.0f} ms per frame. Ground truth flicker "
             f"(the scene's own change): **{100 * truth.scores()['flicker']:.2f}%** of pixels per frame.", "",
             "| filter | gate | motion | mean IU | change | flicker % | flicker cut | extra ms/frame | extra time |",
             "|---|---|---|---|---|---|---|---|---|"]
    for momentum, gate, flow, iu, flicker, ms in rows:
        extra = ms - base_ms if momentum else 0.0
        lines.append(f"| {'EMA ' + format(momentum, 'g') if momentum else 'none (per frame)'} | "
                     f"{format(gate, 'g') if momentum else '-'} | {'flow' if flow else '-'} | {iu:.2f} | {iu - base_iu:+.2f} | {flicker:.2f} | "
                     f"{100 * (1 - flicker / base_flicker):.0f}% | {extra:.1f} | {100 * extra / forward_ms:.1f}% |")
    lines += ["", "`fcnkit predict MODEL clip.mp4 --smooth M --gate G` applies a row's filter (`--flow` for motion 'flow'); "
              "`fcnkit eval MODEL --data camvid:PATH --flicker` gives the first row's figures.",
              "Reproduce: `.venv/bin/python benchmarks/video_stability.py`."]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
