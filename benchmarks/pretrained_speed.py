"""Speed of the pretrained CamVid FCN-8s next to torchvision's LR-ASPP MobileNetV3-Large, one run.

Both nets go through the same paths, side by side: eager PyTorch fp32 (BN folded,
channels_last) and bf16 autocast, ONNX Runtime int8 (static, calibrated) and OpenVINO
int8 (NNCF), at ``--size`` with batch 1; ours also with its upscore8 as conv +
depth-to-space (``-subpixel`` rows: what ``fcnkit optimize --subpixel`` builds). LR-ASPP is what a user would pick instead
(torchvision's fast segmentation net); its 11-class head is untrained here (no weights
can be downloaded), so its rows give speed only. Every path is timed up to the (H, W) class map
(the argmax on the host for class scores; ``-labels`` rows run it inside the graph). Ours also gives mean IU on CamVid val
and the change against its own fp32 model; the target is <= 8 ms with OpenVINO int8 and
a drop <= 0.5 (the README's figure comes from ``fcnkit optimize`` on all 101 images).

    .venv/bin/python benchmarks/pretrained_speed.py                      # camvid-fcn8s-lite0
    .venv/bin/python benchmarks/pretrained_speed.py --model runs/camvid_lite0/best.pt --val-limit 101
    .venv/bin/python benchmarks/pretrained_speed.py --size 64x96 --repeats 1 --val-limit 2  # smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import torch
import torchvision
from torch import nn

import fcnkit
from fcnkit.engine.runtime import cpu_model
from fcnkit.engine.samples import load_samples
from fcnkit.cli.models import parse_size
from fcnkit.export import optimize as opt
from fcnkit.export.bench import BenchRow, format_table, time_interleaved
from fcnkit.export.optimize import with_timing
from fcnkit.heads import SEG_OUTPUT
from fcnkit.models import create_model, register_model
from fcnkit.models.subpixel import rewritable_upsamplings

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "camvid"
RUNGS = [("eager-fp32", dict(backend="torch", precision="fp32")),
         ("eager-bf16", dict(backend="torch", precision="bf16")),
         ("ort-int8", dict(backend="onnxruntime", precision="int8")),
         ("ov-fp32", dict(backend="openvino", precision="fp32")),
         ("ov-int8", dict(backend="openvino", precision="int8")),
         # the large upsampling as conv + depth-to-space (fcnkit.models.subpixel), for nets that have one
         ("ort-int8-subpixel", dict(backend="onnxruntime", precision="int8", subpixel=True)),
         ("ov-fp32-subpixel", dict(backend="openvino", precision="fp32", subpixel=True)),
         ("ov-int8-subpixel", dict(backend="openvino", precision="int8", subpixel=True)),
         # the argmax inside the graph (--output labels): every path is timed up to the class map
         ("ov-int8-labels", dict(backend="openvino", precision="int8", output="labels")),
         ("ov-int8-subpixel-labels", dict(backend="openvino", precision="int8", subpixel=True, output="labels"))]


class LRASPPNet(nn.Module):
    """torchvision's ``lraspp_mobilenet_v3_large`` returning ``{"seg": logits}``, as fcnkit's nets do."""

    pad_multiple = 1  # torchvision's head resizes to the input itself

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.net = torchvision.models.segmentation.lraspp_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=num_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {SEG_OUTPUT: self.net(x)["out"]}


@register_model  # registered, so its exported files open as any fcnkit model's (the spec names the builder)
def lraspp_mobilenet_v3_large(*, num_classes: int = 11, encoder: str = "mobilenet_v3_large") -> nn.Module:
    return LRASPPNet(num_classes)


def LRASPP(num_classes: int) -> nn.Module:
    return create_model("lraspp_mobilenet_v3_large", num_classes=num_classes)


def add_model_and_data(p: argparse.ArgumentParser) -> None:
    """The arguments the CamVid speed benchmarks share: the model, its input, its val and calibration data."""
    p.add_argument("--model", default="camvid-fcn8s-lite0", help="weights name or model file")
    p.add_argument("--size", type=parse_size, default=(360, 480))
    p.add_argument("--data", default=f"camvid:{DEFAULT_DATA}")
    p.add_argument("--val-limit", type=int, default=20, help="val images for mean IU (default 20)")
    p.add_argument("--calib-limit", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_and_data(p)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--rounds", type=int, default=5, help="the timed runs of every path are spread over this many "
                   "rounds that visit each path in turn, so a slow minute on a shared machine hits all alike")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ours = fcnkit.load(args.model).eval()
    nets = [(f"FCN-8s {ours.spec.config['encoder']} (ours)", ours), ("LR-ASPP MobileNetV3-L (torchvision)",
                                                                   LRASPP(ours.spec.num_classes).eval())]
    h, w = args.size
    rows: list[tuple[str, BenchRow]] = []
    runtimes = {}
    # the same input for both nets: a uniform random image in each net's own preprocessing (both TF/ImageNet-like)
    x = ours.spec.preprocessing(torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)))
    with tempfile.TemporaryDirectory(prefix="fcnkit-speed.") as work:
        for label, net in nets:
            prep = net.spec.preprocessing
            samples = load_samples(args.data, "val", prep, limit=args.val_limit)
            calib = [s.image for s in load_samples(args.data, "train", prep, limit=args.calib_limit)]
            reference = opt.Reference.of(net, samples)
            onnx_cache: dict = {}
            rewritable = bool(rewritable_upsamplings(net))
            for name, recipe in RUNGS:
                if recipe.get("subpixel") and not rewritable:
                    continue
                variant = opt.build_variant(net, workdir=Path(work) / f"{len(rows)}-{name}", calibration=calib,
                                            threads=args.threads, onnx_cache=onnx_cache, **recipe)
                row = dataclasses.replace(opt.measure(variant, samples, reference, timed=False), name=name)
                rows.append((label, row))
                runtimes[len(rows) - 1] = variant.runtime
                print(f"{label:<38} {name:<17} mIU {row.mean_iu:6.2f} ({row.mean_iu_change:+.2f})"
                      f"  {row.size_mb:6.1f} MB", flush=True)
        print(f"timing {len(rows)} paths side by side, {args.rounds} rounds ...", flush=True)
        timings = time_interleaved({i: opt.to_classes(rt) for i, rt in runtimes.items()}, x, warmup=args.warmup,
                                   repeats=args.repeats, rounds=args.rounds)
        rows = [(label, with_timing(row, timings[i])) for i, (label, row) in enumerate(rows)]
        for label, row in rows:
            print(f"{label:<38} {row.name:<17} {row.median_ms:8.1f} ms", flush=True)
    title = (f"{cpu_model()}, {h}x{w}, batch 1, {args.threads} threads, up to the class map, median of "
             f"{args.repeats} timed in {args.rounds} interleaved rounds; mean IU on "
             f"{args.val_limit} CamVid val images (LR-ASPP's head is untrained: speed only)")
    lines = [f"# Pretrained CamVid FCN-8s vs LR-ASPP, {title}", "",
             "| model | path | ms / image | images/s | model MB | mean IU | change vs fp32 | pixels as fp32 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label, r in rows:
        trained = label.endswith("(ours)")
        lines.append(f"| {label} | {r.name} | {r.median_ms:.1f} | {r.images_per_s:.1f} | {r.size_mb:.1f} | "
                     f"{r.mean_iu:.2f} | {r.mean_iu_change:+.2f} | {100 * r.agreement:.2f}% |" if trained else
                     f"| {label} | {r.name} | {r.median_ms:.1f} | {r.images_per_s:.1f} | {r.size_mb:.1f} | - | - | "
                     f"{100 * r.agreement:.2f}% |")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"pretrained_speed_{h}x{w}"
    (args.out / f"{stem}.md").write_text(text)
    (args.out / f"{stem}.json").write_text(json.dumps([{"model": m, **r.to_dict()} for m, r in rows], indent=1))
    print(f"wrote {args.out / stem}.md/.json")
    print(format_table([r for _, r in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
