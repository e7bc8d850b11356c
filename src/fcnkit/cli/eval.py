"""``fcnkit eval CHECKPOINT --data SPEC``: the paper's four metrics, per-class IoU, plots.

Writes ``metrics.json``, ``confusion.png`` and ``class_iou.png`` (default
``<checkpoint dir>/eval-<split>/``). Two-class road datasets also get KITTI
MaxF / AP / best threshold. Runs under ``torchrun`` too (ranks shard the images).
"""

from __future__ import annotations

import argparse
import math

from ..detection.decode import DEFAULT_NMS_IOU


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score a saved model or checkpoint on a dataset split",
                       description="Pixel accuracy, mean accuracy, mean IU and frequency-weighted IU from one "
                                   "confusion matrix over the whole split (Long et al. 2015, sec. 5), per-class "
                                   "IoU, and KITTI MaxF/AP for binary road data.")
    p.add_argument("checkpoint", help="best.pt / last.pt from fcnkit train, or a saved model")
    p.add_argument("--data", required=True, metavar="SPEC",
                   help="FORMAT:PATH or PATH, e.g. camvid:../shared/data/camvid")
    p.add_argument("--split", default="val")
    p.add_argument("--out", default=None, help="report folder (default: <checkpoint dir>/eval-<split>)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"])
    p.add_argument("--road-class", type=int, default=None,
                   help="class index scored with KITTI MaxF/AP (default: 'road' of two-class datasets)")
    p.add_argument("--max-samples", type=int, default=None, help="score only the first N images")
    p.add_argument("--nms-iou", type=float, default=DEFAULT_NMS_IOU,
                   help="detection: class-wise NMS IoU after peak extraction (0: none, the paper's decoding)")
    p.set_defaults(func=_eval)


def _fmt(v: float | None) -> str:
    return "   n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:6.4f}"


def _eval(args: argparse.Namespace) -> int:
    from ..detection.evaluate import eval_command, is_detection_checkpoint
    from ..engine.evaluate import evaluate_checkpoint

    if is_detection_checkpoint(args.checkpoint):  # boxes: COCO mAP instead of the confusion matrix
        if not 0 <= args.nms_iou <= 1:
            raise ValueError(f"--nms-iou must be in [0, 1] (0: no NMS), not {args.nms_iou}")
        return eval_command(args)

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, not {args.batch_size}")
    report = evaluate_checkpoint(args.checkpoint, args.data, split=args.split, out_dir=args.out,
                                 batch_size=args.batch_size, workers=args.workers, device=args.device, amp=args.amp,
                                 road_class=args.road_class, max_samples=args.max_samples)
    if "classes" not in report:  # not rank 0
        return 0
    print(f"{args.checkpoint} on {args.data} ({args.split}, {report['images']} images, "
          f"{report['pixels']:,} labelled pixels)")
    print(f"  pixel acc {_fmt(report['pixel_acc'])}   mean acc {_fmt(report['mean_acc'])}   "
          f"mean IU {_fmt(report['mean_iu'])}   fw IU {_fmt(report['fw_iu'])}")
    width = max(len(c) for c in report["classes"])
    print(f"  {'class'.ljust(width)}     IoU    acc")
    for name, iu, acc in zip(report["classes"], report["class_iu"], report["class_acc"]):
        print(f"  {name.ljust(width)}  {_fmt(iu)} {_fmt(acc)}")
    if "kitti" in report:
        k = report["kitti"]
        print(f"  KITTI road: MaxF {_fmt(k['max_f'])}  AP {_fmt(k['ap'])}  best threshold {k['best_threshold']:.3f}")
    print(f"wrote {report['report_dir']}/metrics.json, confusion.png, class_iou.png")
    return 0
