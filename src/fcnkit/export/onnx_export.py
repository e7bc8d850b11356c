"""PyTorch -> ONNX with dynamic batch, height and width, checked before it is kept.

Uses ``torch.onnx.export(dynamo=True)``: it traces through ``torch.export``, so the
fast geometry's pad-to-a-multiple-of-32 (``math.ceil`` on the input size) and the
final crop become shape arithmetic in the graph instead of constants baked in at
the example size -- the legacy TorchScript tracer gets this wrong silently.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from ..extras import require
from ..io import atomic_write, check_output_file, discard_temp, publish_temp, temp_beside
from ..heads import LABELS_OUTPUT, SEG, SEG_OUTPUT, output_names
from ..inference.runtime import INPUT_NAME, META_KEY, OnnxRuntimeModel, export_meta
from ..models.fcn import FINAL_UPSAMPLE_NAMES, FCNDecoder
from ..models.spec import spec_of
from ..models.subpixel import SubpixelUpsample
from ..nn import class_map
from .verify import DEFAULT_SIZES, Parity, check_parity

DEFAULT_OPSET = 18
ONNX_MODULES = ("onnx", "onnxscript")  # torch.onnx.export(dynamo=True) builds the graph with onnxscript
EXAMPLE_SHAPE = (2, 3, 100, 140)  # batch 2: torch.export specialises a dimension whose example is 1;
# H, W not multiples of 32 so the traced branch is the one that pads (by amounts computed from the size)


@dataclass
class ExportReport:
    path: Path
    format: str
    parity: list[Parity] = field(default_factory=list)
    size_bytes: int = 0

    def __str__(self) -> str:
        lines = [f"{self.format} export {self.path} ({self.size_bytes / 2**20:.1f} MiB)"]
        lines += [f"  parity {p}" for p in self.parity]
        return "\n".join(lines)


class WithLabels(nn.Module):
    """``model`` with its class scores reduced to classes inside the graph (``--output labels``):
    a (N, H, W) uint8 map is 1/(4 C) of the float32 scores to copy out of the runtime, and the
    argmax runs in the runtime's threads instead of numpy's one. When the final upsampling is
    a sub-pixel conv (``fcnkit optimize --subpixel``), the argmax runs before its
    depth-to-space and the crop (``SubpixelUpsample.classes_only``, on a copy of the model)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        spec = spec_of(model)
        if SEG not in spec.heads:
            raise ValueError("--output labels replaces the class scores of a segmenting model; this model only "
                             "predicts boxes (its box maps are exported as they are)")
        self.names = output_names(spec.heads, "labels")
        self.dtype = torch.uint8 if spec.num_classes <= 256 else torch.int32
        final = _final_subpixel(model) if self.dtype == torch.uint8 else None
        if final is not None:
            model = copy.deepcopy(model)
            _final_subpixel(model).classes_only = True
        self.classes_first = final is not None
        self.model = model

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = dict(self.model(x))
        seg = out.pop(SEG_OUTPUT)
        if self.classes_first:  # (N, 1, H, W) classes already
            out[LABELS_OUTPUT] = seg[:, 0]
        else:  # class_map's transpose then ArgMax over the innermost axis: OpenVINO ran that faster
            out[LABELS_OUTPUT] = class_map(seg).to(self.dtype)  # (N, H, W)
        return {k: out[k] for k in self.names}


def _final_subpixel(model: nn.Module) -> SubpixelUpsample | None:
    """The FCN decoder's final upsampling when it is a sub-pixel conv: the one whose output
    only a crop separates from the class scores."""
    decoder = getattr(model, "decoder", None)
    if not isinstance(decoder, FCNDecoder):
        return None
    final = getattr(decoder, FINAL_UPSAMPLE_NAMES[decoder.output_stride], None)
    return final if isinstance(final, SubpixelUpsample) else None


def to_onnx_proto(model: nn.Module, *, opset: int = DEFAULT_OPSET, meta: dict | None = None,
                  output: str = "logits"):
    """The ``onnx.ModelProto`` of ``model`` with dynamic (batch, height, width) and metadata;
    ``output="labels"``: with the argmax inside (``WithLabels``), recorded in the metadata."""
    require("export", *ONNX_MODULES)
    from torch.export import Dim

    model = model.eval()
    meta = dict(meta if meta is not None else export_meta(model))
    outputs = output_names(spec_of(model).heads, output)  # the forward dict's keys, in its order
    if output == "labels":  # recorded only then: files without it give class scores, as before
        model, meta["output"] = WithLabels(model).eval(), output
    device = next(model.parameters()).device
    x = torch.zeros(*EXAMPLE_SHAPE, device=device)
    dims = {0: Dim("batch"), 2: Dim("height"), 3: Dim("width")}
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (x,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                                    output_names=list(outputs), dynamic_shapes=(dims,),
                                    verbose=False, optimize=True)
    proto = program.model_proto
    # class scores and classes come at the input's size: say so instead of the exporter's derived expressions
    at_input_size = {SEG_OUTPUT: ((0, "batch"), (2, "height"), (3, "width")),
                     LABELS_OUTPUT: ((0, "batch"), (1, "height"), (2, "width"))}
    for out in proto.graph.output:
        out_dims = out.type.tensor_type.shape.dim
        for i, name in at_input_size.get(out.name, ((0, "batch"),)):
            out_dims[i].ClearField("dim_value")
            out_dims[i].dim_param = name
    set_metadata(proto, meta)
    proto.producer_name = "fcnkit"
    return proto


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's progress prints on stdout (we print our own report)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def set_metadata(proto, meta: dict) -> None:
    """Replace the ``fcnkit`` metadata entry of an ONNX model (e.g. after quantisation)."""
    require("export", "onnx")
    import onnx

    keep = [p for p in proto.metadata_props if p.key != META_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    proto.metadata_props.append(onnx.StringStringEntryProto(key=META_KEY, value=json.dumps(meta)))


def save_proto(proto, path: str | Path) -> None:
    """``onnx.save`` atomically (temp file in the target folder, fsync, rename)."""
    atomic_write(path, lambda f: f.write(proto.SerializeToString()))


def check_onnx(path: str | Path) -> None:
    """``onnx.checker`` (full check, with shape inference); ValueError naming the file."""
    require("export", "onnx")
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{path}: ONNX checker rejected the export ({type(e).__name__}: {e})") from e


def export_onnx(model: nn.Module, path: str | Path, *, opset: int = DEFAULT_OPSET,
                sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES, meta: dict | None = None,
                verify: bool = True, output: str = "logits") -> ExportReport:
    """Export, run the checker, check parity with eager PyTorch at ``sizes``, then move into place.
    ``output="labels"``: the SEG head gives classes (argmax inside), not class scores.

    Nothing appears at ``path`` unless every check passed. A path that cannot be written
    (a folder, no ``.onnx`` suffix, a read-only folder) or a missing ``export`` extra is
    refused before the export starts.
    """
    path = check_output_file(path, suffixes=(".onnx",), what="ONNX export")
    require("export", *ONNX_MODULES, *(("onnxruntime",) if verify else ()))
    proto = to_onnx_proto(model, opset=opset, meta=meta, output=output)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path, suffix=".onnx")
    try:
        save_proto(proto, tmp)
        check_onnx(tmp)
        report = ExportReport(path, "onnx", size_bytes=tmp.stat().st_size)
        if verify:
            report.parity = check_parity(model, OnnxRuntimeModel(tmp), sizes=sizes, output=output,
                                         name=f"ONNX export of {path.name}")
        publish_temp(tmp, path)
    finally:
        discard_temp(tmp)
    return report


__all__ = ["ExportReport", "WithLabels", "export_onnx", "to_onnx_proto", "save_proto", "set_metadata", "check_onnx",
           "DEFAULT_OPSET", "ONNX_MODULES"]
