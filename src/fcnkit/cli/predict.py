"""``fcnkit predict MODEL INPUT... [--out DIR]``: masks, overlays (and probabilities) for
images of any size and overlay videos, skipping and reporting what cannot be read.

Per image ``<name>`` under ``--out`` (default ``runs/predict/N``, the first free N;
folder inputs keep their sub-folders):
``<name>.mask.png`` class indices with the palette, ``<name>.overlay.jpg``,
``<name>.probs.npy`` (float16 (C, H, W), with ``--probs``) and
``<name>.detections.json`` for detection models (and with ``--save-txt`` ``<name>.txt``, YOLO
format); per video ``<name>.overlay.mp4``,
``<name>.frames/`` (per frame ``NNNNNN_TTTTTTTTms.png``: index and time; with ``--probs``
also ``.probs.npy``) and ``<name>.frames.jsonl`` (per frame: time, class shares, share
of pixels changed since the last frame, detections); the summary line gives the
flicker (share of pixels changing class per frame), which ``--smooth`` reduces.
Exit status: 0 all done, 1 some inputs skipped (listed), 2 unusable model or options.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_quiet, examples, parse_scales
from .models import parse_size


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="segment images (any size) and videos", description=__doc__,
                       epilog=examples("fcnkit predict camvid-fcn8s-lite0 street.png",
                                       "fcnkit predict model.onnx photos/ --out masks --max-memory 512M",
                                       "fcnkit predict runs/camvid_lite0/best.pt clip.mp4 --quiet"))
    p.add_argument("model", help="saved model / training checkpoint, or exported .onnx / OpenVINO .xml")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image or video files, folders, globs, or live sources: a camera (0, /dev/video0) or a "
                        "stream URL (rtsp://, http(s)://, udp://)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: runs/predict/N, the first free N counting from 1)")
    p.add_argument("--tile", type=_parse_tile, default=None,
                   help="force tiles of N or HxW pixels ('0': whole image; default: chosen from --max-memory)")
    p.add_argument("--overlap", type=_parse_overlap, default=None,
                   help="tile overlap: fraction of the tile (0.25) or pixels (64); default a quarter "
                        "of the tile, at least 256 pixels, at most half")
    p.add_argument("--max-memory", default=None,
                   help="working-memory budget beyond image and outputs, e.g. 2G (default 2G)")
    p.add_argument("--tta", action="store_true", help="test-time augmentation: flip + scales 0.75,1,1.25")
    p.add_argument("--scales", type=parse_scales, default=None, help="TTA scales, e.g. 0.5,1,1.5")
    p.add_argument("--flip", action="store_true",
                   help="TTA with horizontal flip (detectors: the flip only, centre scores and sizes averaged)")
    p.add_argument("--probs", action="store_true", help="also write float16 class probabilities (.npy)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip them)")
    p.add_argument("--batch-size", type=int, default=1, help="images per forward pass (same-size images)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes decoding images")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"],
                   help="precision of torch models: auto times fp32 and bf16 on this machine and keeps the faster")
    p.add_argument("--bf16", action="store_true", help="shorthand for --amp bf16")
    p.add_argument("--conf", type=float, default=None,
                   help="detectors: keep boxes whose score is at least this (default: the model's recommended "
                        "threshold, else 0.3)")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay colour opacity")
    p.add_argument("--max-frames", type=int, default=None,
                   help="live sources: stop after this many segmented frames")
    p.add_argument("--duration", type=float, default=None, help="live sources: stop after this many seconds")
    p.add_argument("--save-txt", action="store_true",
                   help="detectors: also write <name>.txt in YOLO format (label cx cy w h score, fractions)")
    p.add_argument("--smooth", type=float, default=0.0, metavar="M",
                   help="videos: average class probabilities over frames with this weight of the past "
                        "(0-1, e.g. 0.5; default 0: every frame on its own) to stop masks flickering")
    p.add_argument("--gate", type=float, default=0.1,
                   help="with --smooth: a pixel whose colour changed by more than this (0-1) since the last "
                        "frame starts afresh (default 0.1)")
    p.add_argument("--flow", action="store_true",
                   help="with --smooth: warp the average along the motion (optical flow, OpenCV) first, so a "
                        "moving camera's masks hold still without lagging (e.g. --smooth 0.8 --gate 0.2 --flow)")
    add_quiet(p)
    p.set_defaults(func=_predict)


def _parse_tile(text: str) -> int | tuple[int, int]:
    if text.strip() == "0":
        return 0
    if "x" in text.lower():
        return parse_size(text)
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"tile must be N, HxW or 0, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"tile must be positive, not {text!r}")
    return value


def _parse_overlap(text: str) -> float | int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"overlap must be a fraction or pixels, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"overlap must not be negative, not {text!r}")
    return value if value < 1 else int(value)


def _predict(args: argparse.Namespace) -> int:
    from ..engine.distributed import joined
    from ..inference.outputs import predict_to_folder
    from ..inference.predictor import Predictor

    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, not {args.max_frames}")
    if args.duration is not None and not args.duration > 0:  # NaN too
        raise ValueError(f"--duration must be a positive number of seconds, not {args.duration}")
    with joined(args.device or "auto") as (dist, device):  # under torchrun: one rank per device, inputs shared
        predictor = Predictor(args.model, device=device, tile=args.tile, overlap=args.overlap,
                              max_memory=args.max_memory, tta=args.tta, scales=args.scales or (1.0,), flip=args.flip,
                              amp=args.amp, bf16=args.bf16, conf=args.conf, progress=args.progress and dist.is_main)
        result = predict_to_folder(predictor, args.inputs, args.out, probs=args.probs, overwrite=args.overwrite,
                                   batch_size=args.batch_size, workers=args.workers, alpha=args.alpha,
                                   smooth=args.smooth, gate=args.gate, flow=args.flow, save_txt=args.save_txt,
                                   max_frames=args.max_frames, duration=args.duration)
    code = 1 if result.failures else 0  # the same on every rank: the result is merged
    if not dist.is_main:
        return code
    ranks = f" by {result.processes} processes" if result.processes > 1 else ""
    existing = f", {result.existing} already done (kept; --overwrite redoes them)" if result.existing else ""
    where = f" -> {result.out}" if result.out.is_dir() else " (nothing written)"  # never name a folder not made
    print(f"predicted {result.done} of {result.total} inputs{ranks}{existing}{where}")
    if result.failures:
        print(f"{len(result.failures)} input(s) skipped:", file=sys.stderr)
        for f in result.failures:
            print(f"  {f.path}: {f.reason}", file=sys.stderr)
    return code
