"""``fcnkit export CHECKPOINT --format onnx|openvino|safetensors``: a verified, portable copy of a model.

``safetensors`` is the release format of fcnkit models: fp16 tensors (half the size, no
measurable accuracy change for the shipped models) with the spec (builder config, heads,
classes, preprocessing) and meta (palette, val metrics) in the header; nothing in it can
run code when loaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_overwrite, examples, refuse_existing
from .models import parse_size

SUFFIX = {"onnx": ".onnx", "openvino": ".xml", "safetensors": ".safetensors"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model to ONNX or OpenVINO (checked against PyTorch), "
                                      "or to fp16 safetensors for release",
                       description="Export with dynamic batch, height and width. Before the file is written "
                       "the ONNX checker runs and the export must match eager PyTorch at two input sizes "
                       "(max |diff| of logits, argmax agreement >= 99.9%). Without --out the file goes to "
                       "runs/export/N/ (the first free N) under the working directory, named after the model.",
                       epilog=examples("fcnkit export camvid-fcn8s-lite0 --format onnx",
                                       "fcnkit export runs/camvid_lite0/best.pt --format openvino --output labels",
                                       "fcnkit export runs/camvid_lite0/best.pt --format safetensors"))
    p.add_argument("checkpoint", type=Path, help="saved model, training checkpoint (.pt) or weights name")
    p.add_argument("--format", choices=sorted(SUFFIX), default="onnx",
                   help="onnx (ONNX Runtime), openvino (.xml + .bin IR) or safetensors (fp16 release file)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    p.add_argument("--out", type=Path, default=None,
                   help="output file (default: runs/export/N/<model name>.onnx / .xml / .safetensors)")
    p.add_argument("--check-sizes", type=parse_size, nargs=2, default=None, metavar="HxW",
                   help="the two input sizes of the parity check (default 224x288 201x263)")
    p.add_argument("--output", choices=("logits", "labels"), default="logits",
                   help="onnx/openvino: what the segmentation head gives: class scores (logits, default: what "
                        "probabilities, TTA, tiling and the temporal filter need) or a uint8 class map with the "
                        "argmax inside the graph (labels: fewer bytes out of the runtime; see docs/cli.md)")
    p.add_argument("--conf", type=float, default=None,
                   help="detectors: the box score threshold to recommend in the file (predict and serve use it "
                        "unless told otherwise; e.g. eval's best-F1 threshold on val)")
    add_overwrite(p)
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from ..export.onnx_export import DEFAULT_OPSET, export_onnx
    from ..export.openvino_export import export_openvino
    from ..export.verify import DEFAULT_SIZES
    from ..inference.runtime import backend_of
    from ..io import next_run_dir
    from ..models.saved import load_model

    out = args.out or next_run_dir("export") / (args.checkpoint.stem + SUFFIX[args.format])
    if out.suffix.lower() != SUFFIX[args.format]:
        raise ValueError(f"{out}: a {args.format} export must end in {SUFFIX[args.format]}")
    refuse_existing(*backend_of(out).files(out), overwrite=args.overwrite)  # an OpenVINO IR's .bin and .json too
    if args.conf is not None and not 0 <= args.conf <= 1:
        raise ValueError(f"--conf must be a score in [0, 1], not {args.conf}")
    extra = {"conf": args.conf} if args.conf is not None else {}
    if args.format == "safetensors":
        if args.output != "logits":
            raise ValueError("--output labels is for onnx and openvino exports (a safetensors file holds weights)")
        return _release(args.checkpoint, out, extra)
    model = load_model(args.checkpoint)
    model.meta.update(extra)
    fn = export_onnx if args.format == "onnx" else export_openvino
    report = fn(model, out, opset=args.opset or DEFAULT_OPSET,
                sizes=tuple(args.check_sizes) if args.check_sizes else DEFAULT_SIZES, output=args.output)
    print(report)
    print(f"wrote {out}")
    return 0


def _release(checkpoint: Path, out: Path, extra: dict) -> int:
    from ..models.saved import save_release
    from ..models.zoo import sha256_of

    save_release(checkpoint, out, **extra)
    print(f"wrote {out} ({out.stat().st_size:,} bytes, fp16), sha256 {sha256_of(out)}")
    return 0
