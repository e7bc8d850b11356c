"""``fcnkit demo``: the whole lesson in a few minutes on a CPU, written to one folder.

1. the building blocks (1x1 conv = FC layer; transposed-conv arithmetic);
2. skip connections pay: FCN-32s and FCN-8s, same encoder and budget, mean IU of both;
3. a detection head on the same kind of encoder;
4. segmentation and detection on held-out scenes, as a PNG grid;
5. inference optimisation: ONNX export, int8 quantisation, a speed/accuracy ladder;
6. ``report.md`` (embedding the PNGs) and ``metrics.json``.

By default the data are generated street scenes (``fcnkit.data.synthetic``), so the
demo needs nothing but the package; ``data="camvid:PATH"`` runs the segmentation steps
on CamVid (no building blocks, no detection: the sections are numbered 1-4 then).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from ..config import TrainConfig
from ..io import atomic_write_text, check_output_dir
from ..data import build_dataset, eval_transforms, train_transforms
from ..data.synthetic import SyntheticStreets
from ..detection.decode import decode
from ..draw import draw_boxes
from ..engine import train
from ..export.bench import time_callable
from ..export.onnx_export import export_onnx
from ..export.quantize import quantize_onnx
from ..inference.runtime import OnnxRuntimeModel
from ..engine.samples import LabelledImage, agreement, mean_iu, predict_all
from ..heads import SEG_OUTPUT
from ..inference.postprocess import color_mask
from ..models.encoders import encoder_preprocessing
from ..models.spec import spec_of
from .blocks import demo_1x1, demo_transpose


@dataclass(frozen=True)
class DemoPlan:
    """Sizes and budgets; the defaults finish in about three minutes on 2 cores."""

    encoder: str = "resnet18"
    width: float = 1.0
    size: tuple[int, int] = (96, 128)  # generated scenes (H, W)
    n_train: int = 480
    n_val: int = 48
    seg_iters: int = 240  # per model: FCN-32s and FCN-8s get the same budget
    batch_size: int = 8
    lr: float = 2e-3
    det_iters: int = 300
    bench_repeats: int = 10


QUICK = DemoPlan(size=(64, 96), n_train=48, n_val=8, seg_iters=6, batch_size=4, det_iters=3,
                 bench_repeats=2)


DEMO_RUNS = ("fcn32s", "fcn8s", "detector")  # the run folders under OUT/runs that the demo writes


def run_demo(out_dir: str | Path, *, data: str | None = None, plan: DemoPlan = DemoPlan(),
             say: Callable[[str], None] = print, progress: bool = True) -> dict:
    """Run the steps (building blocks and detection only with generated data) and return
    what ``metrics.json`` holds; ``progress=False``: no training progress bars or lines."""
    out = check_output_dir(out_dir, what="demo folder")
    out.mkdir(parents=True, exist_ok=True)
    for name in DEMO_RUNS:  # the demo replaces its own previous runs (training refuses to reuse a run folder)
        previous = out / "runs" / name
        if previous.is_dir():
            say(f"replacing the previous demo run {previous}")
            shutil.rmtree(previous)
    torch.manual_seed(0)
    results: dict = {"plan": asdict(plan), "data": data or "generated street scenes"}
    t_start = time.perf_counter()

    step = itertools.count(1)  # sections are numbered as they run: --data skips two of them
    if data is None:
        say(f"== {next(step)}. building blocks ==")
        results["blocks"] = {"max_abs_diff_1x1": demo_1x1(say), "transpose_formula_ok": demo_transpose(say)}

    say(f"\n== {next(step)}. skip connections: FCN-32s vs FCN-8s (same encoder, same budget) ==")
    train_set, val_set, raw_val, classes, palette = _datasets(data, plan, encoder_preprocessing(plan.encoder))
    models, seg = {}, {}
    for name in ("fcn32s", "fcn8s"):
        t = time.perf_counter()
        summary = train(_train_config(name, plan, out, progress), train_set=train_set, val_set=val_set)
        models[name] = summary["model"].eval()
        m = summary["metrics"]
        seg[name] = {"mean_iu": 100 * m["mean_iu"], "pixel_acc": 100 * m["pixel_acc"],
                     "mean_acc": 100 * m["mean_acc"], "fw_iu": 100 * m["fw_iu"],
                     "per_class_iu": {c: _pct(v) for c, v in zip(classes, m["class_iu"])},
                     "train_seconds": round(time.perf_counter() - t, 1), "iterations": summary["iteration"]}
    results["segmentation"] = seg
    say(_seg_table(seg))

    detector = None
    if data is None:
        say(f"\n== {next(step)}. detection: an 'objects as points' head on the same kind of encoder ==")
        detector, results["detection"] = _train_detector(plan, out, say, progress)
    say(f"\n== {next(step)}. segmentation" + (" and detection" if detector else "") + " on held-out images ==")
    _grid(models, detector, raw_val, palette, out / "predictions.png")
    say(f"wrote {out / 'predictions.png'}")

    say(f"\n== {next(step)}. inference optimisation: export, quantise, measure ==")
    results["ladder"] = _ladder(models["fcn8s"], val_set, plan, out, say)

    results["seconds"] = round(time.perf_counter() - t_start, 1)
    atomic_write_text(out / "metrics.json", json.dumps(results, indent=2, default=_json_default))
    atomic_write_text(out / "report.md", _report(results))
    say(f"\n== {next(step)}. done in {results['seconds']:.0f} s: report {out / 'report.md'}, metrics {out / 'metrics.json'} ==")
    return results


def _pct(v: float) -> float | None:
    return None if v != v else round(100 * v, 1)


def _json_default(o):
    return float(o) if isinstance(o, (np.floating, torch.Tensor)) else str(o)


def _datasets(data: str | None, plan: DemoPlan, preprocessing):
    """(train, val, raw val for pictures, classes, palette) for generated scenes or a dataset spec."""
    aug = train_transforms(preprocessing, scale_range=(0.75, 1.25), crop_size=plan.size, color_jitter=None)
    if data is None:
        train_set = SyntheticStreets(plan.n_train, size=plan.size, seed=0, transforms=aug)
        val_set = SyntheticStreets(plan.n_val, size=plan.size, seed=100_000, transforms=eval_transforms(preprocessing))
        raw = SyntheticStreets(plan.n_val, size=plan.size, seed=100_000)
        return train_set, val_set, raw, SyntheticStreets.classes, SyntheticStreets.palette
    train_set = build_dataset(data, "train", aug)
    val_set = build_dataset(data, "val", eval_transforms(preprocessing))
    raw = build_dataset(data, "val")
    if plan.n_val < len(val_set):
        val_set, raw = Subset(val_set, range(plan.n_val)), Subset(raw, range(plan.n_val))
    base = raw.dataset if isinstance(raw, Subset) else raw
    return train_set, val_set, raw, list(base.classes), [tuple(c) for c in base.palette]


def _train_config(name: str, plan: DemoPlan, out: Path, progress: bool = True) -> TrainConfig:
    return TrainConfig(model=name, encoder=plan.encoder, width=plan.width, batch_size=plan.batch_size,
                       val_batch_size=8, workers=0, optimizer="adamw", lr=plan.lr, weight_decay=1e-4,
                       schedule="poly", warmup_iters=min(20, plan.seg_iters // 4), epochs=10_000,
                       max_iters=plan.seg_iters, val_every=10_000, out_dir=str(out / "runs" / name),
                       seed=0, progress=progress, log_every=50 if progress else 0)


def _seg_table(seg: dict) -> str:
    rows = [f"{'model':<8} {'mean IU':>8} {'pixel acc':>10} {'mean acc':>9} {'fw IU':>7} {'train s':>8}"]
    for name, m in seg.items():
        rows.append(f"{name:<8} {m['mean_iu']:>8.1f} {m['pixel_acc']:>10.1f} {m['mean_acc']:>9.1f} "
                    f"{m['fw_iu']:>7.1f} {m['train_seconds']:>8.0f}")
    gain = seg["fcn8s"]["mean_iu"] - seg["fcn32s"]["mean_iu"]
    rows.append(f"skip connections: {gain:+.1f} mean IU (FCN-8s over FCN-32s)")
    return "\n".join(rows)


def _train_detector(plan: DemoPlan, out: Path, say, progress: bool = True) -> tuple[nn.Module, dict]:
    """The same trainer as the FCNs: the model's task (detection) brings its targets and loss."""
    pre = encoder_preprocessing(plan.encoder)
    aug = train_transforms(pre, scale_range=(0.75, 1.25), crop_size=plan.size, color_jitter=None)
    train_set = SyntheticStreets(plan.n_train, size=plan.size, seed=0, transforms=aug)
    val_set = SyntheticStreets(plan.n_val, size=plan.size, seed=100_000, transforms=eval_transforms(pre))
    cfg = replace(_train_config("fcn8s_det", plan, out, progress), out_dir=str(out / "runs" / "detector"), lr=1e-3,
                  schedule="cosine", warmup_iters=min(50, plan.det_iters // 4), max_iters=plan.det_iters,
                  grad_clip=10.0)
    t = time.perf_counter()
    summary = train(cfg, train_set=train_set, val_set=val_set)
    m = summary["metrics"]
    det = {"map": 100 * float(m["map"]), "map_50": 100 * float(m["map_50"]), "map_75": 100 * float(m["map_75"]),
           "train_seconds": round(time.perf_counter() - t, 1), "iterations": summary["iteration"]}
    say(f"car detection on held-out scenes: mAP@[.5:.95] {det['map']:.1f}, AP50 {det['map_50']:.1f}, "
        f"AP75 {det['map_75']:.1f} ({det['train_seconds']:.0f} s of training)")
    return summary["model"].eval(), det


@torch.no_grad()
def _grid(models: dict[str, nn.Module], detector: nn.Module | None, raw: Dataset, palette, path: Path,
          n: int = 4) -> None:
    """Rows of input | ground truth | FCN-32s | FCN-8s | detections (green truth, red found)."""
    rows = []
    for i in range(min(n, len(raw))):
        image, target = raw[i]
        rgb = image.permute(1, 2, 0).numpy()  # (H, W, 3) uint8
        x = spec_of(models["fcn8s"]).preprocessing(image.float().div(255)).unsqueeze(0)
        tiles = [rgb, color_mask(target["mask"].numpy(), palette)]
        for name in ("fcn32s", "fcn8s"):
            tiles.append(color_mask(models[name](x)[SEG_OUTPUT].argmax(1)[0].numpy(), palette))
        if detector is not None:
            maps = detector(x)
            (pred,) = decode(maps, stride=spec_of(detector).output_stride,
                             threshold=0.3, nms_iou=0.5, image_sizes=[tuple(rgb.shape[:2])])
            canvas = draw_boxes(Image.fromarray(rgb), target.get("boxes", torch.zeros(0, 4)).tolist(),
                                colors=(0, 255, 0), width=1)
            tiles.append(np.asarray(draw_boxes(canvas, pred["boxes"].tolist(), colors=(255, 0, 0), width=1)))
        rows.append(np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in tiles], 1))
    Image.fromarray(np.concatenate(rows, 0)).save(path)


def _ladder(model: nn.Module, val_set: Dataset, plan: DemoPlan, out: Path, say) -> list[dict]:
    """fp32 eager (the yardstick), bf16 autocast, ONNX Runtime fp32 and int8: ms and mean IU."""

    samples = [LabelledImage(img.as_subclass(Tensor).unsqueeze(0), tgt["mask"].as_subclass(Tensor).unsqueeze(0))
               for img, tgt in (val_set[i] for i in range(len(val_set)))]
    model = model.float().eval()
    onnx_path, int8_path = out / "fcn8s.onnx", out / "fcn8s-int8.onnx"
    with contextlib.redirect_stdout(io.StringIO()):
        export_onnx(model, onnx_path, sizes=(plan.size, (plan.size[0] + 32, plan.size[1] - 32)))
        quantize_onnx(onnx_path, int8_path, [s.image for s in samples[: max(4, len(samples) // 2)]])

    def bf16(x: Tensor) -> dict[str, Tensor]:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return {k: v.float() for k, v in model(x).items()}

    variants = [("PyTorch eager fp32", model), ("PyTorch eager bf16", bf16),
                ("ONNX Runtime fp32", OnnxRuntimeModel(onnx_path)), ("ONNX Runtime int8", OnnxRuntimeModel(int8_path))]
    reference = predict_all(model, samples)
    num_classes = spec_of(model).num_classes
    ref_iu = mean_iu(reference, samples, num_classes)
    rows = []
    x = samples[0].image
    for label, run in variants:
        preds = reference if run is model else predict_all(run, samples)
        timing = time_callable(run, x, warmup=2, repeats=plan.bench_repeats)
        iu = mean_iu(preds, samples, num_classes)
        rows.append({"variant": label, "ms": round(timing.median_ms, 2), "mean_iu": round(iu, 2),
                     "delta_iu": round(iu - ref_iu, 2), "agreement": round(100 * agreement(preds, reference), 2)})
    base = rows[0]["ms"]
    for r in rows:
        r["speedup"] = round(base / r["ms"], 2)
    say(f"FCN-8s at {x.shape[-2]}x{x.shape[-1]}, batch 1, median of {plan.bench_repeats}:")
    say(_ladder_table(rows))
    return rows


def _ladder_table(rows: list[dict]) -> str:
    lines = [f"{'variant':<20} {'ms':>8} {'speed-up':>9} {'mean IU':>8} {'change':>7} {'same px %':>10}"]
    for r in rows:
        lines.append(f"{r['variant']:<20} {r['ms']:>8.2f} {r['speedup']:>8.2f}x {r['mean_iu']:>8.1f} "
                     f"{r['delta_iu']:>+7.2f} {r['agreement']:>10.2f}")
    return "\n".join(lines)


def _report(r: dict) -> str:
    seg = r["segmentation"]
    lines = ["# fcnkit demo report", "", f"Data: {r['data']}. Total time {r['seconds']:.0f} s.", ""]
    step = itertools.count(1)  # sections numbered as they appear (--data has no blocks, no detection)
    if "blocks" in r:
        lines += [f"## {next(step)}. Building blocks", "",
                  f"- A fully connected head and its convolutional twin differ by at most "
                  f"{r['blocks']['max_abs_diff_1x1']:.1e}.",
                  f"- Transposed-conv output sizes match `(n-1)*stride - 2*padding + kernel`: "
                  f"{r['blocks']['transpose_formula_ok']}.", ""]
    lines += [f"## {next(step)}. Skip connections pay", "", "```", _seg_table(seg), "```", ""]
    if "detection" in r:
        d = r["detection"]
        lines += [f"## {next(step)}. Detection", "", f"Car detection on held-out scenes: mAP@[.5:.95] {d['map']:.1f}, "
                  f"AP50 {d['map_50']:.1f}, AP75 {d['map_75']:.1f}.", ""]
    lines += [f"## {next(step)}. Predictions on held-out images", "",
              "Columns: input, ground truth, FCN-32s, FCN-8s" + (", detections (green truth, red found)"
                                                                   if "detection" in r else "") + ".", "",
              "![predictions](predictions.png)", "",
              f"## {next(step)}. Inference optimisation", "", "```", _ladder_table(r["ladder"]), "```", ""]
    return "\n".join(lines)
