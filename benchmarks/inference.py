"""The inference ladder for VGG-16 FCN-8s, measured side by side in one run.

Rungs: the authors' reference geometry in eager fp32 (the baseline), the fast
(pad-to-32) geometry in eager fp32 / bf16 (optionally torch.compile), ONNX Runtime
fp32 / int8, OpenVINO fp32 / bf16 / int8 / int8+bf16, and truncated-SVD fc6/fc7
variants of the OpenVINO rungs. Every rung reports latency (median, p90) at
``--size``, speed-up over the baseline, achieved GFLOP/s and % of the measured
matmul peak, model size, and mean IU on CamVid val with its change against the
fp32 (fast geometry) model. Target on this 2-core machine: <= 100 ms per image
at 360x480 with a mean-IU drop <= 0.5.

    python benchmarks/inference.py --checkpoint runs/camvid-fcn8s/best.pt
    python benchmarks/inference.py --width 0.0625 --size 64x64 --repeats 1 --val-limit 2   # smoke

Without ``--checkpoint`` an untrained FCN-8s of ``--width`` is used: timings are
real, accuracies are not (the script says so).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from fcnkit.engine.samples import agreement, load_samples, mean_iu, predict_all
from fcnkit.cli.models import parse_size
from fcnkit.export import optimize as opt
from fcnkit.export.bench import BenchRow, format_table, machine_peaks, peak_for, plot_rows, time_callable
from fcnkit.inference.runtime import TorchRuntime
from fcnkit.models.saved import load_model as load_saved
from fcnkit.models import create_model
from fcnkit.profile import count_flops

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "camvid"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=None, help="a VGG-16 FCN-8s trained on CamVid")
    p.add_argument("--width", type=float, default=1.0, help="channel width of the untrained stand-in")
    p.add_argument("--size", type=parse_size, default=(360, 480), help="timed input HxW (default 360x480)")
    p.add_argument("--data", default=f"camvid:{DEFAULT_DATA}", help="dataset spec for accuracy and calibration")
    p.add_argument("--val-limit", type=int, default=None, help="validation images (default: all 101)")
    p.add_argument("--calib-limit", type=int, default=32, help="int8 calibration images from train")
    p.add_argument("--svd-ranks", default="512,1024", help="comma-separated fc6/fc7 ranks ('' for none)")
    p.add_argument("--ac-drop", type=float, default=0.4,
                   help="mean-IU drop NNCF's accuracy control may spend on the '-ac' rungs (default 0.4)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--compile", action="store_true", help="add torch.compile rungs (slow to compile)")
    p.add_argument("--skip", default="", help="comma-separated rung names to leave out")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for PNG / JSON / MD")
    return p.parse_args(argv)


def load_model(args: argparse.Namespace) -> tuple[torch.nn.Module, bool]:
    if args.checkpoint is not None:
        model = load_saved(args.checkpoint)
        recipe = model.meta.get("optimization")
        if recipe or model.spec.config.get("encoder") != "vgg16":
            raise SystemExit(f"{args.checkpoint}: need a plain VGG-16 FCN checkpoint (got {model.spec.builder_config}, "
                             f"{recipe})")
        return model.eval(), True
    torch.manual_seed(0)  # the same stand-in every run
    model = create_model("fcn8s", num_classes=11, width=args.width).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # score layers start at zero; give the stand-in non-trivial predictions
        for name, p in model.named_parameters():
            if "score" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.01)
    model.meta = {}
    return model, False


def reference_twin(model: torch.nn.Module) -> torch.nn.Module:
    """The same weights in the authors' pad-100 geometry (the baseline everyone starts from)."""
    config = dict(model.spec.builder_config, geometry="reference")
    twin = create_model(config.pop("name"), **config).eval()
    twin.load_state_dict(model.state_dict(), strict=True)
    twin.spec = twin.spec.replace(preprocessing=model.spec.preprocessing, classes=model.spec.classes)
    return twin


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model, trained = load_model(args)
    h, w = args.size
    kind = "trained checkpoint" if trained else "UNTRAINED stand-in: accuracies are not meaningful"
    print(f"FCN-8s {model.spec.builder_config}, {kind}")
    peaks = machine_peaks(args.threads)
    print(f"matmul peak, {args.threads} threads: fp32 {peaks['fp32']:.0f}, bf16 {peaks['bf16']:.0f} GFLOP/s",
          flush=True)
    try:
        samples = load_samples(args.data, "val", model.spec.preprocessing, limit=args.val_limit)
        calib = [s.image for s in load_samples(args.data, "train", model.spec.preprocessing, limit=args.calib_limit)]
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"cannot load {args.data}: {e}")
    reference = opt.Reference.of(model, samples)
    print(f"fp32 model: mean IU {reference.mean_iu:.2f} on {len(samples)} val images", flush=True)
    x = model.spec.preprocessing(torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)))  # (1, 3, H, W)
    skip = set(filter(None, args.skip.split(",")))
    ranks = [int(r) for r in args.svd_ranks.split(",") if r]
    spectra = opt.svd_spectra(model) if ranks else {}

    rungs: list[tuple[str, dict]] = [
        ("reference-eager-fp32", {}),
        ("eager-fp32", dict(backend="torch", precision="fp32")),
        ("eager-bf16", dict(backend="torch", precision="bf16")),
    ]
    if args.compile:
        rungs += [("compile-fp32", dict(backend="torch", precision="fp32", compile=True)),
                  ("compile-bf16", dict(backend="torch", precision="bf16", compile=True))]
    rungs += [
        ("ort-fp32", dict(backend="onnxruntime", precision="fp32")),
        ("ort-int8", dict(backend="onnxruntime", precision="int8")),
        ("ov-fp32", dict(backend="openvino", precision="fp32")),
        ("ov-bf16", dict(backend="openvino", precision="bf16")),
        ("ov-int8", dict(backend="openvino", precision="int8")),
        ("ov-int8+bf16", dict(backend="openvino", precision="int8", compute="bf16")),
        ("ov-int8+bf16-ac", dict(backend="openvino", precision="int8", compute="bf16", ac=True)),
    ]
    for r in ranks:
        svd = {n: r for n in spectra}
        rungs += [(f"ov-bf16-svd{r}", dict(backend="openvino", precision="bf16", svd=svd)),
                  (f"ov-int8+bf16-svd{r}", dict(backend="openvino", precision="int8", compute="bf16", svd=svd)),
                  (f"ov-int8+bf16-ac-svd{r}", dict(backend="openvino", precision="int8", compute="bf16", svd=svd,
                                                   ac=True))]

    rows: list[BenchRow] = []
    onnx_cache: dict = {}  # one fp32 export per distinct transform, shared by the rungs
    with tempfile.TemporaryDirectory(prefix="fcnkit-ladder.") as work:
        for name, recipe in rungs:
            if name in skip:
                continue
            t0 = time.perf_counter()
            recipe = dict(recipe)
            compute = recipe.pop("compute", None)
            if recipe.pop("ac", False):
                # NNCF accuracy control on the val images; it measures against the model it is given,
                # so an SVD rung's own drop (seen on its bf16 rung) comes out of the budget first
                budget = args.ac_drop
                svd_rows = [r for r in rows if "svd" in name and r.name == f"ov-bf16-{name.split('-')[-1]}"]
                if svd_rows:
                    budget = max(0.05, args.ac_drop + min(0.0, svd_rows[0].mean_iu_change))
                recipe["accuracy_control"] = (samples, budget)
            if not recipe:  # the baseline: plain eager, reference geometry, no channels_last
                net = reference_twin(model)
                runtime, twin, size = TorchRuntime(net, channels_last=False), net, _state_bytes(net)
                backend, precision = "torch", "fp32"
            else:
                variant = opt.build_variant(model, workdir=Path(work) / name, calibration=calib, spectra=spectra,
                                            threads=args.threads, onnx_cache=onnx_cache, **recipe)
                runtime, twin, size = variant.runtime, variant.torch_model, variant.size_bytes
                backend, precision = variant.backend, variant.precision
                if compute == "bf16":
                    from fcnkit.inference.runtime import OpenVINOModel

                    runtime = OpenVINOModel(variant.staged[-1], threads=args.threads, precision="bf16", static=True)
                    precision = "int8+bf16"
                if recipe.get("compile"):
                    backend += "+compile"
            preds = predict_all(runtime, samples)
            miu = mean_iu(preds, samples, reference.num_classes)
            timing = time_callable(runtime, x, warmup=args.warmup, repeats=args.repeats)
            flops, _ = count_flops(twin.float(), x)
            rows.append(BenchRow(name, backend, precision, timing.median_ms, timing.p90_ms, timing.images_per_s,
                                 gflop=flops / 1e9, peak_gflops=peak_for(peaks, precision.split("+")[-1]),
                                 size_mb=size / 2**20, mean_iu=miu, mean_iu_change=miu - reference.mean_iu,
                                 agreement=agreement(preds, reference.preds)))
            rows[-1].speedup = rows[0].median_ms / timing.median_ms
            print(f"{name}: {timing.median_ms:.1f} ms, mIU {miu:.2f} ({miu - reference.mean_iu:+.2f}) "
                  f"[{time.perf_counter() - t0:.0f} s]", flush=True)
            del runtime

    title = (f"FCN-8s VGG-16 (width {model.spec.config['width']}) {h}x{w}, {args.threads} threads, "
             f"{len(samples)} CamVid val images")
    table = format_table(rows)
    ok = [r for r in rows if r.mean_iu_change is not None and r.mean_iu_change >= -0.5]
    best = min(ok, key=lambda r: r.median_ms) if ok else None
    verdict = (f"best within a 0.5 mean-IU drop: {best.name} at {best.median_ms:.1f} ms "
               f"({best.speedup:.2f}x the baseline); target <= 100 ms: "
               f"{'met' if best.median_ms <= 100 else 'NOT met'}") if best else "no rung within a 0.5 drop"
    print(f"\n{title}\n{table}\n{verdict}")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"inference_{h}x{w}_w{model.spec.config['width']:g}"
    plot_rows(rows, args.out / f"{stem}.png", title=title)
    (args.out / f"{stem}.json").write_text(json.dumps({"title": title, "trained": trained, "peaks": peaks,
                                                       "fp32_mean_iu": reference.mean_iu,
                                                       "rows": [r.to_dict() for r in rows]}, indent=1))
    (args.out / f"{stem}.md").write_text(f"{title}\n\n```\n{table}\n```\n\n{verdict}\n")
    print(f"wrote {args.out / stem}.png/.json/.md")
    return 0


def _state_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


if __name__ == "__main__":
    sys.exit(main())
