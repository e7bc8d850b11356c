"""Is the precision and layout fcnkit picks by default the fastest on this machine?

For each shipped model: its predict path (``Predictor`` on a real image, preprocessing to
class map) and its recipe's training step (the trainer's own step on a real batch of the
recipe's data: loss, backward, optimiser, EMA) are run in every precision and layout the
probe considers, side by side (round-robin, so a noisy minute slows every candidate alike),
and fcnkit's own choice, measured fresh in an empty cache as a first run would (predict: the
probe; training: the trial over the run's first steps), is set against the fastest. Issue
23's targets: the default within 5% of the fastest path, the probe under 3 s the first time
and nothing after (the cached call is timed too); for training, the trial's cost is what its
steps took beyond as many steps of the chosen path.

    .venv/bin/python benchmarks/default_path.py                 # every shipped model, predict and train
    .venv/bin/python benchmarks/default_path.py --models raccoon-fcn8s-det-lite0 --what predict --rounds 3
    .venv/bin/python benchmarks/default_path.py --what train --time-all   # every trial candidate timed: the
                                                                          # data behind the trial's drop rule
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from fcnkit import Predictor
from fcnkit.engine import probe, trainer
from fcnkit.engine.probe import RunChoice, cpu_candidates, known_choice
from fcnkit.engine.run import train_run
from fcnkit.engine.runtime import cpu_model
from fcnkit.export.bench import time_interleaved
from fcnkit.inference.images import read_rgb_array
from fcnkit.models.zoo import get_weights

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
IMAGES = {"camvid": DATA / "camvid" / "val" / "0016E5_07959.png", "raccoon": DATA / "raccoon" / "images" / "raccoon-1.jpg"}
MODELS = ["camvid-fcn8s-lite0", "camvid-fcn8s-resnet18", "raccoon-fcn8s-det-lite0"]


def choices(amp: str = "auto") -> list[RunChoice]:
    """Every path the probe chooses among on this CPU, whatever a recipe fixes."""
    return [RunChoice(d, cl, "") for d, cl in cpu_candidates(amp)]


def report(kind: str, name: str, times_ms: dict[str, list[float]], chosen: str, first_s: float,
           cached_s: float) -> str:
    med = {k: statistics.median(v) for k, v in times_ms.items()}
    fastest = min(med, key=med.get)
    rows = "  ".join(f"{k} {med[k]:.1f}" for k in sorted(med, key=med.get))
    return (f"{name:26s} {kind:7s} chosen {chosen:18s} {med[chosen] / med[fastest]:.3f}x the fastest ({fastest})"
            f"  {'trial' if kind == 'train' else 'probe'} {first_s:.2f} s first, {cached_s * 1000:.1f} ms cached"
            f"  | ms: {rows}")


def predict_row(name: str, rounds: int) -> str:
    image = IMAGES["raccoon" if "raccoon" in name else "camvid"]
    array = read_rgb_array(image)
    p = Predictor(name, progress=False)
    runtime, probe_s = p.backend, []

    def timing_probe(predictor: Predictor) -> None:  # what a predictor's first image pays for its choice
        original = predictor.backend.choose_run

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                probe_s.append(time.perf_counter() - t0)
        predictor.backend.choose_run = timed

    timing_probe(p)
    p.predict(array)  # empty cache: the probe measures
    chosen = p.run_choice.label
    again = Predictor(name, progress=False)
    timing_probe(again)
    again.predict(array)  # a second process on this machine: the probe reads its cache

    def run_as(c: RunChoice):
        def fn(_x: torch.Tensor) -> None:
            runtime.use(c)
            p.predict(array)
        return fn

    fns = {c.label: run_as(c) for c in choices("off" if "det" in name else "auto")}  # detectors predict in fp32
    timings = time_interleaved(fns, torch.zeros(1), warmup=1, repeats=rounds * 3, rounds=rounds)
    print(f"predict probe: {p.run_choice.label}: {p.run_choice.reason}")
    return report("predict", name, {k: t.samples_ms for k, t in timings.items()}, chosen, probe_s[0], probe_s[1])


def train_row(name: str, rounds: int) -> str:
    recipe = get_weights(name).recipe
    result, settled, step = probe.StepTrial.result, trainer._Trainer._settled, trainer._Trainer.step
    out: dict = {}

    def timed_result(self, model, **kwargs):  # the trial over the run's first steps, in an empty cache
        choice = result(self, model, **kwargs)
        out["first"], out["shape"] = self.excess, self.shape  # its steps' cost beyond a run that knew the answer
        out["steps"] = "  ".join(f"{RunChoice(d, cl, '').label} {self.warm[(d, cl)]:.2f}/"
                                 f"{self.seconds[(d, cl)] if self.plan.count((d, cl)) > 1 else float('nan'):.2f}"
                                 for d, cl in self.warm)  # the trial's own reading: warm-up / timed step, s
        return choice

    def timed_settled(self, choice):
        settled(self, choice)
        shape = out.get("shape")
        if shape is None:  # one candidate on this CPU (e.g. a recipe that fixes the layout, no bf16): nothing timed
            out.update(first=0.0, cached=0.0)
            return
        t0 = time.perf_counter()  # what the next run on this machine pays: reading the cache
        again = known_choice(self.model, device=self.device, shape=shape, train=True, amp=self.cfg.amp,
                             channels_last=self.cfg.channels_last)
        out["cached"] = time.perf_counter() - t0
        assert again is not None and again.label == choice.label

    def side_by_side(self, images, targets):  # after the trial: every candidate runs the trainer's step on a batch
        if self.run_choice is None or "row" in out:
            return step(self, images, targets)
        cs = choices()
        times: dict[str, list[float]] = {c.label: [] for c in cs}
        for r in range(rounds + 1):  # round 0 warms each layout up
            for c in cs[r % len(cs):] + cs[:r % len(cs)]:
                self.use(c)
                t0 = time.perf_counter()
                step(self, images, targets)
                if r:
                    times[c.label].append(1000 * (time.perf_counter() - t0))
        out["row"] = report("train", name, times, self.run_choice.label, out["first"], out["cached"])
        self.use(self.run_choice)
        return step(self, images, targets)

    probe.StepTrial.result, trainer._Trainer._settled, trainer._Trainer.step = timed_result, timed_settled, side_by_side
    try:
        with tempfile.TemporaryDirectory() as scratch:  # the trial's steps (at most two per candidate), then one
            train_run(recipe, out_dir=scratch, workers=0, val_every=10**6, stop_after=2 * len(choices()) + 1,
                      progress=False)
    finally:
        probe.StepTrial.result, trainer._Trainer._settled, trainer._Trainer.step = result, settled, step
    return out["row"] + f"\n{'':26s} trial steps, warm-up/timed s: {out.get('steps', '-')}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--what", choices=["predict", "train", "both"], default="both")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (predict: 3 calls per candidate each)")
    ap.add_argument("--time-all", action="store_true",
                    help="the trial times every candidate (no drop after the warm-ups): data for the drop rule")
    args = ap.parse_args()
    if args.time_all:
        probe.TRIAL_DROPPED = float("inf")
    if not DATA.is_dir():
        raise SystemExit(f"{DATA}: the shared data is needed (a real image and each recipe's training data)")
    print(f"{cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}; medians of side-by-side runs")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["FCNKIT_CACHE"] = cache  # the probes measure as on a machine they never ran on
        for name in args.models.split(","):
            if args.what in ("predict", "both"):
                print(predict_row(name, args.rounds), flush=True)
            if args.what in ("train", "both"):
                print(train_row(name, args.rounds), flush=True)


if __name__ == "__main__":
    main()
