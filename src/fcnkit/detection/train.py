"""Train and evaluate a detector (``fcn8s-det``) or the joint model (``fcn8s-joint``).

A small loop of its own: AdamW with warm-up + cosine decay, bf16 autocast (about 4x
fp32 matmul speed on CPUs with AMX/AVX512-BF16, and fine on CUDA), channels_last,
a tqdm bar with loss and images/s, COCO mAP on the validation set after each epoch,
and atomic checkpoints (``last.pt`` every epoch, ``best.pt`` on the best val mAP)
in the ``fcnkit.models.saved`` record format, so ``load_model`` rebuilds either and
training resumes from ``last.pt`` where it stopped.

Command line (the raccoon run of the issue)::

    python -m fcnkit.detection.train --data voc_xml:../shared/data/raccoon \\
        --encoder mobilenet_v3_large --size 256 --epochs 40 --budget-min 20 --out runs/raccoon-det
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm import tqdm

from ..io import atomic_write_text
from ..models.saved import atomic_save, model_record, read_record
from .decode import DEFAULT_NMS_IOU
from .evaluate import evaluate_detection, make_loader
from .losses import joint_loss


def _to(targets: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in targets.items()}


def _write_json(rows: list[dict[str, float]], path: Path) -> None:
    """Atomically, with NaN (a statistic without ground truth) as null: strict JSON."""
    clean = [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in rows]
    atomic_write_text(path, json.dumps(clean, indent=1))


def train_detection(model: nn.Module, train_set: Dataset, val_set: Dataset | None = None, *,
                    out_dir: str | Path, epochs: int = 30, batch_size: int = 8, lr: float = 1e-3,
                    weight_decay: float = 1e-4, warmup_steps: int = 50, workers: int = 0, amp: bool = True,
                    channels_last: bool = True, device: str | torch.device | None = None,
                    time_budget: float | None = None, resume: bool = True, seed: int = 0,
                    seg_loss: Callable[[Tensor, Tensor], Tensor] | None = None, meta: dict | None = None,
                    pause_after: int | None = None, progress: bool = True) -> list[dict[str, float]]:
    """Train ``model`` and return the per-epoch history (losses, val statistics, seconds).

    Args:
        train_set / val_set: fcnkit samples (boxes and/or masks), already transformed
            to normalised float images (``fcnkit.data.transforms``).
        out_dir: where ``last.pt``, ``best.pt`` and ``history.json`` go.
        time_budget: seconds of training wall time (data loading included, validation
            not; summed over resumed runs) after which the run stops at the next step,
            evaluates and saves.
        resume: continue from ``out_dir/last.pt`` if it exists (same model config).
        pause_after: return after this many epochs of this call (``last.pt`` saved; a
            later call with the same arguments continues exactly where it stopped).
        meta: saved with the model (e.g. ``{"classes": [...]}``) for ``load_model``.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    train_loader = make_loader(train_set, model, batch_size=batch_size, shuffle=True, workers=workers, seed=seed)
    val_loader = make_loader(val_set, model, batch_size=batch_size, shuffle=False, workers=workers) if val_set else None
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]  # biases and norms: no weight decay
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    total_steps = max(1, epochs * len(train_loader))

    state = {"epoch": 0, "step": 0, "seconds": 0.0, "best": -1.0, "history": []}

    def schedule(step: int) -> float:
        """Linear warm-up, then cosine to 1% of lr over the steps or the time budget,
        whichever runs out first, so a budget-cut run still ends annealed."""
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if time_budget:
            t = max(t, state["seconds"] / time_budget)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    last, best = out_dir / "last.pt", out_dir / "best.pt"
    if resume and last.is_file():
        rec = read_record(last)
        if rec["config"] != model.config:
            raise ValueError(f"{last}: checkpoint is for {rec['config']}, not {model.config}; "
                             f"use another --out or resume=False")
        model.load_state_dict(rec["model"])
        optimizer.load_state_dict(rec["optimizer"])
        scheduler.load_state_dict(rec["scheduler"])
        state.update(rec["train_state"])  # in place: the schedule reads state["seconds"]
    meta = dict(meta or {})

    def save(path: Path) -> None:
        atomic_save({**model_record(model, **meta), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "train_state": state}, path)

    out_of_time = lambda: time_budget is not None and state["seconds"] >= time_budget  # noqa: E731
    stop_at = epochs if pause_after is None else min(epochs, state["epoch"] + pause_after)
    while state["epoch"] < stop_at and not out_of_time():
        model.train()
        train_loader.generator.manual_seed(seed * 1_000_003 + state["epoch"])  # epoch order survives resumes
        sums: dict[str, float] = {}
        steps = images_seen = 0
        bar = tqdm(train_loader, desc=f"epoch {state['epoch'] + 1}/{epochs}", leave=False, disable=not progress)
        tick = time.perf_counter()
        for images, targets in bar:
            images = images.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            targets = _to(targets, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                outputs = model(images)
            losses = joint_loss(outputs, targets, ignore_index=getattr(train_set, "ignore_index", 255),
                                seg_loss=seg_loss)  # fp32: every term casts its inputs
            if not losses["total"].requires_grad:  # no labels of any kind in this batch
                continue
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            optimizer.step()
            scheduler.step()
            dt, tick = time.perf_counter() - tick, time.perf_counter()  # wall time incl. data loading
            state["seconds"] += dt
            state["step"] += 1
            steps += 1
            images_seen += len(images)
            for name, v in losses.items():
                sums[name] = sums.get(name, 0.0) + float(v.detach())
            bar.set_postfix(loss=f"{sums['total'] / steps:.3f}", img_s=f"{len(images) / dt:.1f}")
            if out_of_time():
                break
        state["epoch"] += 1
        row: dict[str, float] = {"epoch": state["epoch"], "seconds": round(state["seconds"], 1),
                                 **{f"loss_{k}": v / max(1, steps) for k, v in sums.items()}}
        if val_loader is not None:
            stats = evaluate_detection(model, val_loader, device=device, progress=progress, nms_iou=DEFAULT_NMS_IOU)
            row.update({f"val_{k}": v for k, v in stats.items()}, val_nms_iou=DEFAULT_NMS_IOU)  # how boxes were decoded
            model.train()
        state["history"].append(row)
        score = row.get("val_map", -1.0)
        if val_loader is not None and score == score and score > state["best"]:  # NaN-safe
            state["best"] = score
            save(best)
        save(last)
        _write_json(state["history"], out_dir / "history.json")
        if progress:
            tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                                if k in ("epoch", "seconds", "loss_total", "loss_heatmap", "loss_size",
                                         "loss_offset", "loss_seg", "val_map", "val_map_50", "val_map_75")))
    return state["history"]


# --- from a TrainConfig (``fcnkit train --set model=fcn8s-det ...``) and the command line ----

def train_from_config(cfg, *, resume: bool = False) -> list[dict[str, float]]:
    """Train a detection / joint model from ``fcnkit.config.TrainConfig`` fields.

    Uses data, splits, max_*_samples, crop_size, scale_range, hflip, color_jitter,
    batch_size, workers, model, encoder(_weights), width, lr, weight_decay, epochs,
    warmup_iters, amp, channels_last, device, seed, out_dir, progress. Detection always
    trains with AdamW + warm-up/cosine, so ``optimizer``, ``schedule`` and the loss
    fields do not apply. The joint model needs samples with masks (its segmentation
    classes are the dataset's ``classes``) and box classes in ``box_classes``.
    """
    import warnings

    from torch.utils.data import Subset

    from ..data import build_dataset, eval_transforms, train_transforms
    from ..models import create_model

    if cfg.optimizer != "adamw" or cfg.schedule != "cosine":
        warnings.warn(f"detection models train with AdamW and a cosine schedule; ignoring optimizer="
                      f"{cfg.optimizer!r}, schedule={cfg.schedule!r}", stacklevel=2)
    probe = build_dataset(cfg.data, cfg.train_split)
    if cfg.model.replace("-", "_") == "fcn8s_joint":
        box_classes = list(getattr(probe, "box_classes", []))
        if not box_classes:
            raise ValueError(f"{cfg.data}: the joint model needs a dataset with masks and boxes (box_classes)")
        classes = {"num_classes": probe.num_classes, "det_classes": len(box_classes)}
    else:
        box_classes = list(probe.classes)
        classes = {"num_classes": len(box_classes)}
    model = create_model(cfg.model, encoder=cfg.encoder, encoder_weights=cfg.encoder_weights, width=cfg.width,
                         geometry=cfg.geometry, **classes)
    jitter = (cfg.color_jitter,) * 3 + (0.0,) if cfg.color_jitter else None
    train_set = build_dataset(cfg.data, cfg.train_split, train_transforms(
        model.preprocessing, crop_size=cfg.crop_size, scale_range=cfg.scale_range, hflip=cfg.hflip,
        color_jitter=jitter))
    val_set = build_dataset(cfg.data, cfg.val_split, eval_transforms(model.preprocessing))
    if cfg.max_train_samples:
        train_set = Subset(train_set, range(min(cfg.max_train_samples, len(train_set))))
    if cfg.max_val_samples:
        val_set = Subset(val_set, range(min(cfg.max_val_samples, len(val_set))))
    return train_detection(model, train_set, val_set, out_dir=cfg.out_dir, epochs=cfg.epochs,
                           batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                           warmup_steps=cfg.warmup_iters, workers=cfg.workers, amp=cfg.amp != "off",
                           channels_last=cfg.channels_last, device=None if cfg.device == "auto" else cfg.device,
                           resume=resume, seed=cfg.seed, progress=cfg.progress,
                           meta={"classes": list(probe.classes), "box_classes": box_classes})



def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fcnkit.detection.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="detection dataset spec, e.g. voc_xml:../shared/data/raccoon")
    p.add_argument("--model", default="fcn8s-det")
    p.add_argument("--encoder", default="mobilenet_v3_large")
    p.add_argument("--encoder-weights", default=None)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--output-stride", type=int, default=8, choices=(4, 8))
    p.add_argument("--size", type=int, default=384, help="longer image side in pixels (train crop is size x size)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--budget-min", type=float, default=None, help="stop after this many minutes of training")
    p.add_argument("--no-amp", action="store_true")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from torchvision.transforms import v2

    from ..data import build_dataset, eval_transforms, train_transforms
    from ..models import create_model

    args = _parse_args(argv)
    probe = build_dataset(args.data, "train")
    model = create_model(args.model, num_classes=probe.num_classes, encoder=args.encoder,
                         encoder_weights=args.encoder_weights, width=args.width, output_stride=args.output_stride)
    fit = v2.Resize(size=None, max_size=args.size)  # longer side -> size, boxes follow
    train_tf = v2.Compose([fit, train_transforms(model.preprocessing, crop_size=args.size, scale_range=(0.6, 1.4))])
    val_tf = v2.Compose([fit, eval_transforms(model.preprocessing)])
    train_set = build_dataset(args.data, "train", train_tf)
    val_set = build_dataset(args.data, "val", val_tf)
    print(f"{args.model} / {args.encoder}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params; "
          f"train {len(train_set)} / val {len(val_set)} images at {args.size}px; out {args.out}")
    history = train_detection(model, train_set, val_set, out_dir=args.out, epochs=args.epochs,
                              batch_size=args.batch_size, lr=args.lr, workers=args.workers, amp=not args.no_amp,
                              time_budget=None if args.budget_min is None else args.budget_min * 60,
                              seed=args.seed, meta={"classes": list(probe.classes), "max_size": args.size})
    best = max((r for r in history if "val_map" in r), key=lambda r: r["val_map"], default=None)
    if best:
        print(f"best val: mAP {best['val_map']:.4f}  AP50 {best['val_map_50']:.4f}  AP75 {best['val_map_75']:.4f} "
              f"(epoch {best['epoch']}, {best['seconds']:.0f} s of training)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
