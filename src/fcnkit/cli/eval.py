"""``fcnkit eval MODEL --data SPEC [SPEC ...]``: the paper's four metrics, COCO mAP, plots.

Segmentation (and the masks a joint model sees) gets ``metrics.json``,
``confusion.png`` and ``class_iou.png``; two-class road datasets also KITTI MaxF /
AP. Detection (and the boxes a joint model sees) gets COCO mAP and
``detections.png``. Default folder ``runs/eval/N`` under the working directory (the
first free N). Printed scores are percent with one decimal; ``metrics.json`` keeps
fractions in [0, 1] (its ``units`` field says so). Runs under ``torchrun`` too (ranks
shard the images, metrics equal a one-process run).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from .common import add_quiet, examples, parse_scales

DEFAULT_NMS_IOU = 0.5  # = fcnkit.detection.decode.DEFAULT_NMS_IOU (a test checks); not imported: torch


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score a saved model or checkpoint on a dataset split",
                       description="Pixel accuracy, mean accuracy, mean IU and frequency-weighted IU from one "
                                   "confusion matrix over the whole split (Long et al. 2015, sec. 5), per-class "
                                   "IoU, and KITTI MaxF/AP for binary road data; COCO mAP for detection models. "
                                   "Scores are printed in percent; metrics.json keeps fractions in [0, 1].",
                       epilog=examples("fcnkit eval camvid-fcn8s-lite0 --data camvid:data/camvid --tta",
                                       "fcnkit eval runs/camvid/best.pt --data camvid:data/camvid --split train@0006R0 "
                                       "--out report",
                                       "fcnkit eval joint.xml --data camvid:data/camvid voc_xml:data/raccoon"))
    p.add_argument("checkpoint", help="best.pt / last.pt from fcnkit train, a saved model or a weights name "
                                      "(segmentation, detection or joint: each is scored on the labels the data has)")
    p.add_argument("--data", required=True, metavar="SPEC", action="extend", nargs="+",
                   help="FORMAT:PATH or PATH, e.g. camvid:../shared/data/camvid; several specs (or --data "
                        "repeated) are scored together, e.g. a joint model on CamVid masks and raccoon boxes")
    p.add_argument("--split", default="val",
                   help="dataset split to score: a name, or an expression such as train+val or train@0006R0 "
                        "(samples whose file name starts with 0006R0; ! drops them)")
    p.add_argument("--out", default=None, help="report folder (default: runs/eval/N, the first free N)")
    p.add_argument("--batch-size", type=int, default=1, help="images per forward pass")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes decoding images")
    p.add_argument("--device", default="auto", help="torch device: auto (cuda if available, else cpu), cpu, cuda:N")
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"],
                   help="precision of torch models (auto: fp32 or bf16, whichever is faster here, measured)")
    p.add_argument("--road-class", type=int, default=None,
                   help="class index scored with KITTI MaxF/AP (default: 'road' of two-class datasets)")
    p.add_argument("--max-samples", type=int, default=None, help="score only the first N images")
    p.add_argument("--nms-iou", type=float, default=DEFAULT_NMS_IOU,
                   help="detection: class-wise NMS IoU after peak extraction (0: none, the paper's decoding)")
    p.add_argument("--tta", action="store_true",
                   help="score test-time augmentation: flip + scales 0.75,1,1.25 (as fcnkit predict --tta)")
    p.add_argument("--scales", type=parse_scales, default=None, help="TTA scales, e.g. 0.75,1,1.25")
    p.add_argument("--flip", action="store_true",
                   help="TTA with horizontal flip (detectors: the flip only, centre scores and sizes averaged)")
    p.add_argument("--flicker", action="store_true",
                   help="the split is a clip's frames in file order (CamVid val is): also report the share of "
                        "pixels changing class from frame to frame, predicted and in the ground truth")
    add_quiet(p)
    p.set_defaults(func=_eval)


def _fmt(v: float | None) -> str:
    """A fraction as percent with one decimal, 5 wide: 0.6382 -> ' 63.8'."""
    return "  n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:5.1f}"


def _num(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def _views(tta: dict) -> str:
    scales = ",".join(f"{s:g}" for s in tta["scales"])
    return f", TTA: scales {scales}{' + flip' if tta['flip'] else ''}"


def _eval(args: argparse.Namespace) -> int:
    from ..inference.evaluate import evaluate_checkpoint

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, not {args.batch_size}")
    if not 0 <= args.nms_iou <= 1:
        raise ValueError(f"--nms-iou must be in [0, 1] (0: no NMS), not {args.nms_iou}")
    data = args.data[0] if len(args.data) == 1 else args.data
    report = evaluate_checkpoint(args.checkpoint, data, split=args.split, out_dir=args.out,
                                 batch_size=args.batch_size, workers=args.workers, device=args.device, amp=args.amp,
                                 road_class=args.road_class, max_samples=args.max_samples,
                                 nms_iou=args.nms_iou or None, tta=args.tta, scales=args.scales, flip=args.flip,
                                 flicker=args.flicker, progress=args.progress)
    if "report_dir" not in report:  # not rank 0
        return 0
    print(f"{args.checkpoint} ({report['task']}) on {' + '.join(args.data)} ({args.split}, {report['images']} images"
          f"{', longer side ' + str(report['max_size']) + ' px' if report.get('max_size') else ''}"
          f"{_views(report['tta']) if 'tta' in report else ''}); scores in %")
    wrote = ["metrics.json"]
    if "mean_iu" in report:
        print(f"  segmentation, {report['pixels']:,} labelled pixels: pixel acc {_fmt(report['pixel_acc'])}   "
              f"mean acc {_fmt(report['mean_acc'])}   mean IU {_fmt(report['mean_iu'])}   fw IU {_fmt(report['fw_iu'])}")
        width = max(len(c) for c in report["classes"])
        print(f"  {'class'.ljust(width)}  IoU %  acc %")
        for name, iu, acc in zip(report["classes"], report["class_iu"], report["class_acc"]):
            print(f"  {name.ljust(width)}  {_fmt(iu)}  {_fmt(acc)}")
        wrote += ["confusion.png", "class_iou.png"]
    if "flicker" in report:
        worst = max((f, n) for n, f in zip(report["classes"], report["class_flicker"]) if f == f)
        print(f"  flicker (pixels changing class per frame): predicted {_fmt(report['flicker']).strip()}, "
              f"ground truth {_fmt(report['gt_flicker']).strip()}; most unstable class {worst[1]} "
              f"({_fmt(worst[0]).strip()} of its pixels)")
    if "kitti" in report:
        k = report["kitti"]
        print(f"  KITTI road: MaxF {_fmt(k['max_f'])}  AP {_fmt(k['ap'])}  "
              f"(best road-probability threshold {k['best_threshold']:.3f})")
    if "map" in report:
        print(f"  detection: mAP@[.5:.95] {_fmt(report['map'])}   AP50 {_fmt(report['map_50'])}   "
              f"AP75 {_fmt(report['map_75'])}   AR@100 {_fmt(report['mar_100'])}")
        if report.get("conf_best_f1") is not None:
            print(f"  scores: best-F1 threshold {report['conf_best_f1']:.2f} (precision "
                  f"{_fmt(report['precision_at_conf']).strip()}, recall {_fmt(report['recall_at_conf']).strip()}); "
                  f"true peaks median {_num(report['true_score_median'])}, false peaks p95 "
                  f"{_num(report['false_score_p95'])}, max {_num(report['false_score_max'])}")
        if (Path(report["report_dir"]) / "detections.png").is_file():
            wrote.append("detections.png")
    print(f"wrote {report['report_dir']}/{', '.join(wrote)}")
    return 0
