"""int8 post-training static quantisation with the runtimes' own tools.

Static quantisation needs activation ranges, so both paths calibrate on real,
preprocessed images: ONNX Runtime's ``quantize_static`` (QDQ format, per-channel
int8 weights, uint8 activations, MinMax ranges) reads them through a
``CalibrationDataReader``; NNCF's ``quantize`` takes them as an ``nncf.Dataset``.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ..extras import require
from ..inference.runtime import INPUT_NAME
from ..metrics import ConfusionMatrix
from ..nn import class_map


def _arrays(images: Sequence[Tensor]) -> list[np.ndarray]:
    if not images:
        raise ValueError("int8 calibration needs at least one image")
    out = []
    for x in images:
        x = x.detach().float().cpu()
        out.append((x if x.ndim == 4 else x.unsqueeze(0)).numpy())  # (1, 3, H, W)
    return out


def quantize_onnx(fp32_path: str | Path, out_path: str | Path, calibration: Sequence[Tensor], *,
                  per_channel: bool = True, exclude_upsampling: bool = True) -> Path:
    """Write an int8 QDQ copy of ``fp32_path`` to ``out_path`` calibrated on ``calibration``.

    ``exclude_upsampling`` keeps the fixed bilinear transposed convs in float: they
    carry no learnt weights, and quantising the final 8x/32x upsampling only adds
    blockiness at class boundaries.
    """
    require("export", "onnx", "onnxruntime")
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, arrays: list[np.ndarray]) -> None:
            self.it = iter(arrays)

        def get_next(self) -> dict | None:
            x = next(self.it, None)
            return None if x is None else {INPUT_NAME: x}

    arrays = _arrays(calibration)
    with tempfile.TemporaryDirectory(dir=Path(out_path).parent) as tmp:
        # ONNX Runtime's recommended first step: shape inference and graph clean-up, so
        # every tensor's shape is known and fusable ops are fused before Q/DQ placement
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared), load_external_data=False)
        exclude = [n.name for n in model.graph.node if n.op_type == "ConvTranspose"] if exclude_upsampling else []
        quantize_static(str(prepared), str(out_path), Reader(arrays), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=exclude)
    return Path(out_path)


def _nncf():
    """NNCF, imported without its noise: torch's "No CUDA runtime is found" (logged when NNCF
    imports torch's C++ extension tools on a CPU machine) and NNCF's INFO lines; its warnings
    and errors still show."""
    import logging

    require("export", "nncf")
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import nncf

    nncf.set_log_level(logging.WARNING)
    return nncf


@contextlib.contextmanager
def _quiet_nncf() -> Iterator[None]:
    """NNCF's rich progress bars kept out of our output (``fcnkit optimize`` prints its own)."""
    with contextlib.redirect_stdout(io.StringIO()):  # rich's console writes to sys.stdout as it is now
        yield


def quantize_openvino(ov_model, calibration: Sequence[Tensor], *, fast_bias_correction: bool = True):
    """An int8 copy of an OpenVINO model via ``nncf.quantize``: the performance preset (symmetric
    int8, what the CPU plugin runs fastest; activations after ReLU become unsigned), CPU target."""
    require("export", "nncf")
    nncf = _nncf()

    arrays = _arrays(calibration)
    dataset = nncf.Dataset(arrays)
    with _quiet_nncf():
        return _output_names_of(ov_model, nncf.quantize(
            ov_model, dataset, subset_size=len(arrays), preset=nncf.QuantizationPreset.PERFORMANCE,
            target_device=nncf.TargetDevice.CPU, fast_bias_correction=fast_bias_correction))


def quantize_openvino_accuracy_control(ov_model, calibration: Sequence[Tensor],
                                       validation: Sequence[tuple[Tensor, Tensor]], num_classes: int, *,
                                       max_drop: float):
    """int8 via ``nncf.quantize_with_accuracy_control``: quantise everything, then return the
    layers that cost most mean IU to float until the drop on ``validation`` ((image, mask)
    pairs) is within ``max_drop`` points."""
    require("export", "nncf")
    nncf = _nncf()

    def validate(compiled, items) -> tuple[float, list[float]]:
        total, per_image = ConfusionMatrix(num_classes), []
        for image, mask in items:
            # its one output, the class scores (optimize quantises segmentation-only models); by position,
            # since NNCF may rename it while it tries layers in float
            out = torch.from_numpy(compiled(image)[compiled.output(0)])  # scores, or classes (argmax inside)
            pred = class_map(out) if out.ndim == 4 else out.long()  # (1, H, W)
            one = ConfusionMatrix(num_classes)
            one.update(mask, pred)
            total.update(mask, pred)
            per_image.append(100.0 * float(np.nan_to_num(one.compute()["mean_iu"])))
        return 100.0 * total.compute()["mean_iu"], per_image

    arrays = _arrays(calibration)
    val = [(a, m.detach().cpu()) for a, (_, m) in zip(_arrays([x for x, _ in validation]), validation)]
    with _quiet_nncf():
        return _output_names_of(ov_model, nncf.quantize_with_accuracy_control(
            ov_model, nncf.Dataset(arrays), nncf.Dataset(val), validate, max_drop=max_drop,
            drop_type=nncf.DropType.ABSOLUTE, preset=nncf.QuantizationPreset.PERFORMANCE,
            target_device=nncf.TargetDevice.CPU, subset_size=len(arrays)))


def _output_names_of(original, quantized):
    """``quantized`` with the output names of ``original``: runners match outputs by name, and
    NNCF renames an output whose layer it returns to float (e.g. "seg" -> "convolution_2")."""
    for before, after in zip(original.outputs, quantized.outputs):
        after.get_tensor().set_names(before.get_names())
    return quantized


__all__ = ["quantize_onnx", "quantize_openvino", "quantize_openvino_accuracy_control"]
