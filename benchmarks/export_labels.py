"""What the argmax inside the graph saves: ``--output labels`` against class scores, one run.

The same model goes through the same exported paths twice, side by side: once giving
(1, C, H, W) float32 class scores (the default) and once the (1, H, W) uint8 classes
(``fcnkit export/optimize --output labels``). Timed, interleaved round by round so both
see the same machine: the runner alone (what leaves the runtime), and ``Predictor.predict``
on a CamVid photo (what ``fcnkit predict`` and ``fcnkit serve`` pay per image: the runtime,
copying its output out, and the argmax on the host for scores). Also the bytes that
leave the runtime per image and the mean IU of each file on CamVid val images (equal
up to int8 calibration). Serve end to end: ``benchmarks/serve_stream.py --model`` on
each int8 file (``--keep DIR`` keeps them).

    .venv/bin/python benchmarks/export_labels.py                       # camvid-fcn8s-lite0
    .venv/bin/python benchmarks/export_labels.py --size 64x96 --rounds 2 --val-limit 2  # smoke
Writes benchmarks/results/export_labels.md. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import fcnkit
from fcnkit.engine.runtime import cpu_model
from fcnkit.engine.samples import load_samples, mean_iu, predict_all
from fcnkit.export import optimize as opt
from fcnkit.inference import Predictor
from pretrained_speed import add_model_and_data  # benchmarks/ is on the path when run as a script

ROOT = Path(__file__).resolve().parents[1]
PATHS = [("onnxruntime", "fp32", False), ("openvino", "fp32", False), ("openvino", "int8", False),
         ("openvino", "int8", True)]  # (backend, precision, sub-pixel upsampling: labels take the argmax before it)


def ms(fn, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append(1000 * (time.perf_counter() - t0))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_and_data(p)
    p.add_argument("--rounds", type=int, default=8, help="interleaved rounds of --repeats calls per file")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--keep", type=Path, default=None, help="copy the int8 files here (for serve_stream.py)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "export_labels.md")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = fcnkit.load(args.model).eval()
    prep = model.spec.preprocessing
    h, w = args.size
    samples = load_samples(args.data, "val", prep, limit=args.val_limit)
    calib = [s.image for s in load_samples(args.data, "train", prep, limit=args.calib_limit)]
    photo = sorted((Path(args.data.split(":", 1)[-1]) / "val").glob("*.png"))[0]  # a CamVid val photo
    image = np.asarray(Image.open(photo).convert("RGB").resize((w, h), Image.BILINEAR))  # (H, W, 3)
    x = prep(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)  # (1, 3, H, W)
    rows = []
    with tempfile.TemporaryDirectory(prefix="fcnkit-labels.") as work:
        files, slugs = {}, {}
        for backend, precision, subpixel in PATHS:
            cache: dict = {}
            path = f"{backend} {precision}" + (" sub-pixel" if subpixel else "")
            slugs[path] = path.replace(" ", "-")
            for output in ("logits", "labels"):
                v = opt.build_variant(model, backend=backend, precision=precision, output=output, threads=args.threads,
                                      workdir=Path(work) / f"{slugs[path]}-{output}", calibration=calib,
                                      onnx_cache=cache, subpixel=subpixel)
                files[(path, precision, output)] = v
                print(f"built {v.name} ({output})", flush=True)
        # predict opens the staged files as `fcnkit predict FILE` would
        predictors = {k: Predictor(v.staged[-1], progress=False) for k, v in files.items()}
        for (path, precision, output), v in files.items():
            if args.keep and precision == "int8":
                args.keep.mkdir(parents=True, exist_ok=True)
                for f in v.staged:
                    shutil.copy(f, args.keep / f"{Path(args.model).stem}.{slugs[path]}.{output}{f.suffix}")
        times = {k: {"runner": [], "predict": []} for k in files}
        with torch.inference_mode():
            for k, v in files.items():  # warm-up: compile, first-call costs
                for _ in range(2):
                    v.runtime(x)
                    predictors[k].predict(image)
            for r in range(args.rounds):
                for k, v in files.items():
                    times[k]["runner"] += ms(lambda: v.runtime(x), args.repeats)
                    times[k]["predict"] += ms(lambda: predictors[k].predict(image), args.repeats)
        for k, v in files.items():
            out = v.runtime(x)
            nbytes = sum(t.numel() * t.element_size() for t in out.values())
            miu = mean_iu(predict_all(v.runtime, samples), samples, model.spec.num_classes)
            rows.append((k, statistics.median(times[k]["runner"]), statistics.median(times[k]["predict"]), nbytes, miu))
    cpu = cpu_model()
    lines = ["# Class scores vs the argmax inside the graph (`benchmarks/export_labels.py`)", "",
             f"`{args.model}`, {h}x{w}, batch 1, {args.threads} threads, {cpu}; median of {args.rounds} x "
             f"{args.repeats} interleaved calls; mean IU on {len(samples)} CamVid val images.", "",
             "| path | output | runner ms | predict ms | saved per image | bytes out of the runtime | mean IU |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    by_key = {k: (run, pred, nb, miu) for k, run, pred, nb, miu in rows}
    for (path, precision, output), (run, pred, nb, miu) in by_key.items():
        saved = "-"
        if output == "labels":
            base = by_key[(path, precision, "logits")][1]
            saved = f"**{base - pred:.1f} ms ({100 * (base - pred) / base:.0f}%)**"
        lines.append(f"| {path} | {output} | {run:.1f} | {pred:.1f} | {saved} | {nb:,} | {miu:.2f} |")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = args.out.read_text() + "\n" if args.out.exists() else ""
    args.out.write_text(previous + text)  # a rerun adds its table (another CPU, another model)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
