"""PyTorch -> ONNX -> OpenVINO IR (``.xml`` + ``.bin`` + ``.json`` metadata sidecar).

Going through the verified ONNX graph keeps one export path (dynamic batch, height
and width included); OpenVINO's converter reads it directly. Weights stay fp32 on
disk (``compress_to_fp16=False``): bf16 is a compile-time choice of the CPU plugin
(the inference precision hint), recorded in the sidecar.
"""

from __future__ import annotations

import json
import os
import tempfile
from glob import escape as glob_escape
from pathlib import Path

from torch import nn

from ..extras import require
from ..inference.runtime import BACKENDS, OpenVINOModel, export_meta, sidecar_path
from .onnx_export import DEFAULT_OPSET, ONNX_MODULES, ExportReport, check_onnx, save_proto, to_onnx_proto
from .verify import DEFAULT_SIZES, check_parity

ir_files = BACKENDS["openvino"].files  # .bin, .json, .xml: the order they are moved into place (.xml marks done)


def save_ir(ov_model, xml_path: str | Path, meta: dict) -> None:
    """Write an OpenVINO model and its sidecar through a temp folder, then rename each file."""
    require("export", "openvino")
    import openvino as ov

    xml_path = Path(xml_path)
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=xml_path.parent, prefix=f".{xml_path.stem}.") as tmp:
        staged = Path(tmp) / xml_path.name
        ov.save_model(ov_model, str(staged), compress_to_fp16=False)
        sidecar_path(staged).write_text(json.dumps(meta, indent=1))
        for f in ir_files(staged):
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
        for src, dst in zip(ir_files(staged), ir_files(xml_path)):
            os.replace(src, dst)


def onnx_to_openvino(onnx_path: str | Path):
    require("export", "openvino")
    import openvino as ov

    onnx_path = Path(onnx_path)
    try:
        if "," not in str(onnx_path):
            return ov.convert_model(str(onnx_path))
        with tempfile.TemporaryDirectory(prefix="fcnkit-ovc.") as tmp:
            return ov.convert_model(str(_comma_free(onnx_path, Path(tmp))))
    except Exception as e:  # noqa: BLE001
        raise RuntimeError(f"OpenVINO could not convert {onnx_path} ({type(e).__name__}: {e})") from e


def _comma_free(onnx_path: Path, tmp: Path) -> Path:
    """``onnx_path`` reached without a comma: ovc reads a comma as a list of model files.

    Not ``Core.read_model`` instead: it skips ovc's graph transformations, and NNCF's int8
    graph made from its result runs every depthwise conv in fp32 on the CPU plugin (measured:
    16 of 16). Symlinks to the file and to its external-data files beside it."""
    link = tmp / "model.onnx"
    link.symlink_to(onnx_path.resolve())
    for sibling in onnx_path.parent.glob(glob_escape(onnx_path.name) + "?*"):  # e.g. model.onnx.data
        (tmp / sibling.name).symlink_to(sibling.resolve())
    return link


def export_openvino(model: nn.Module, xml_path: str | Path, *, opset: int = DEFAULT_OPSET,
                    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES, meta: dict | None = None,
                    verify: bool = True, onnx_path: str | Path | None = None,
                    output: str = "logits") -> ExportReport:
    """Export ``model`` to an OpenVINO IR; ONNX checker and OpenVINO-vs-torch parity must pass first.

    ``onnx_path`` converts an ONNX export of ``model`` made earlier instead of exporting again
    (made with the same ``output``); ``output="labels"``: classes instead of class scores.
    """
    xml_path = BACKENDS["openvino"].check_output(xml_path, "OpenVINO IR")  # and the .bin and .json beside it
    require("export", "openvino", "onnx", *(() if onnx_path is not None else ONNX_MODULES))
    meta = dict(meta if meta is not None else export_meta(model))
    meta.setdefault("precision", "fp32")
    meta.setdefault("inference_precision", "fp32")
    if output == "labels":
        meta["output"] = output
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=xml_path.parent, prefix=f".{xml_path.stem}.export.") as tmp:
        if onnx_path is None:
            onnx_path = Path(tmp) / "model.onnx"
            save_proto(to_onnx_proto(model, opset=opset, meta=meta, output=output), onnx_path)
        check_onnx(onnx_path)
        ov_model = onnx_to_openvino(onnx_path)
        staged = Path(tmp) / xml_path.name
        save_ir(ov_model, staged, meta)
        report = ExportReport(xml_path, "openvino", size_bytes=staged.with_suffix(".bin").stat().st_size)
        if verify:
            runtime = OpenVINOModel(staged, precision="fp32")
            report.parity = check_parity(model, runtime, sizes=sizes, output=output,
                                         name=f"OpenVINO export of {xml_path.name}")
        for src, dst in zip(ir_files(staged), ir_files(xml_path)):
            os.replace(src, dst)
    return report


__all__ = ["export_openvino", "save_ir", "onnx_to_openvino", "ir_files"]
