"""Exported models behind the same call as a torch model: ``runtime(x) -> logits``.

The prediction engine treats an eager model, an ONNX file and an OpenVINO IR alike:
each takes a float32 normalised (N, 3, H, W) tensor and returns logits
(N, C, H, W) as a tensor, and carries ``.meta`` (classes, palette, ignore index,
builder config) and ``.preprocessing``. The metadata travels with the file: as the
``fcnkit`` entry of ONNX ``metadata_props``, and as a JSON sidecar next to an
OpenVINO ``.xml`` (``model.xml`` -> ``model.json``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..models.weights import IMAGENET, Preprocessing

META_KEY = "fcnkit"
META_FORMAT = "fcnkit-export/1"
INPUT_NAME, OUTPUT_NAME = "images", "logits"


def export_meta(model: nn.Module, **extra: Any) -> dict:
    """Everything a runtime needs besides the graph: classes, palette, config, preprocessing."""
    meta = {k: v for k, v in dict(getattr(model, "meta", {}) or {}).items() if k != "optimization"}
    meta["format"] = META_FORMAT
    meta["preprocessing"] = model.preprocessing.to_dict()
    meta["config"] = dict(getattr(model, "config", {}))
    meta.setdefault("num_classes", getattr(model, "num_classes", None))
    meta.update(extra)
    return json.loads(json.dumps(meta, default=_jsonable))  # plain JSON data, tuples -> lists


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.generic,)):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"cannot store {type(v).__name__} in export metadata")


def sidecar_path(xml_path: str | Path) -> Path:
    """``model.xml`` -> ``model.json`` (the OpenVINO IR's metadata)."""
    return Path(xml_path).with_suffix(".json")


class Runtime:
    """Common face of the backends: call on a normalised tensor, get logits back."""

    backend: str = "?"
    precision: str = "fp32"

    def __init__(self, meta: dict, source: str) -> None:
        self.meta = meta
        self.source = source
        prep = meta.get("preprocessing")
        self.preprocessing = Preprocessing.from_dict(prep) if prep else IMAGENET
        self.num_classes = meta.get("num_classes") or meta.get("config", {}).get("num_classes")

    def __call__(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.source}: expected a (N, 3, H, W) image batch, got {tuple(x.shape)}")
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(np.asarray(self._run(arr))).to(x.device)

    def _run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r}, precision={self.precision})"


class OnnxRuntimeModel(Runtime):
    """An ``.onnx`` file run by ONNX Runtime (CUDA provider first when present)."""

    backend = "onnxruntime"

    def __init__(self, path: str | Path, *, threads: int | None = None,
                 providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such ONNX file")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        if providers is None:
            available = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as e:  # noqa: BLE001 - name the file
            raise ValueError(f"{path}: ONNX Runtime cannot load it ({type(e).__name__}: {e})") from e
        raw = self.session.get_modelmeta().custom_metadata_map.get(META_KEY)
        super().__init__(json.loads(raw) if raw else {}, str(path))
        self.precision = self.meta.get("precision", "fp32")
        self.input_name = self.session.get_inputs()[0].name

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]


class OpenVINOModel(Runtime):
    """An OpenVINO IR (``.xml`` + ``.bin`` + ``.json`` sidecar).

    ``precision`` ("fp32" or "bf16") sets the CPU plugin's inference precision hint;
    by default the one recorded at export. ``static=True`` compiles one network per
    input shape (cached), which OpenVINO runs faster than a dynamic-shape network.
    """

    backend = "openvino"

    def __init__(self, xml_path: str | Path, *, threads: int | None = None, precision: str | None = None,
                 device: str = "CPU", static: bool = False) -> None:
        import openvino as ov

        xml_path = Path(xml_path)
        if not xml_path.is_file():
            raise FileNotFoundError(f"{xml_path}: no such OpenVINO IR file")
        side = sidecar_path(xml_path)
        if not side.is_file():
            raise FileNotFoundError(f"{side}: missing metadata sidecar of {xml_path.name} "
                                    f"(re-export with `fcnkit export --format openvino`)")
        try:
            meta = json.loads(side.read_text())
        except ValueError as e:
            raise ValueError(f"{side}: not valid JSON ({e})") from e
        super().__init__(meta, str(xml_path))
        self.precision = meta.get("precision", "fp32")
        compute = precision or meta.get("inference_precision", "fp32")
        if compute not in ("fp32", "bf16"):
            raise ValueError(f"OpenVINO inference precision must be fp32 or bf16, not {compute!r}")
        self.compute_precision = compute
        if self.precision == "fp32" and compute == "bf16":
            self.precision = "bf16"
        self.core = ov.Core()
        try:
            self.model = self.core.read_model(str(xml_path))
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{xml_path}: OpenVINO cannot read it ({type(e).__name__}: {e})") from e
        self.device = device
        self.config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "bf16" if compute == "bf16" else "f32",
                                       "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = int(threads)
        self.static = static
        self._compiled: dict[tuple[int, ...], Any] = {}

    def _compiled_for(self, shape: tuple[int, ...]):
        key = shape if self.static else ()
        if key not in self._compiled:
            model = self.model
            if self.static:
                model = self.model.clone()
                model.reshape({0: list(shape)})  # (N, 3, H, W) fixed
                if len(self._compiled) >= 4:  # keep a few sizes, not every size ever seen
                    self._compiled.pop(next(iter(self._compiled)))
            self._compiled[key] = self.core.compile_model(model, self.device, self.config)
        return self._compiled[key]

    def _run(self, x: np.ndarray) -> np.ndarray:
        compiled = self._compiled_for(tuple(x.shape))
        return compiled(x)[compiled.output(0)]


class TorchRuntime(Runtime):
    """An eager (or ``torch.compile``d) PyTorch model with the same call as the others.

    ``precision="bf16"`` runs under CPU/CUDA autocast in bf16 (logits come back
    float32); ``channels_last`` uses the memory format oneDNN's convolutions prefer.
    """

    backend = "torch"

    def __init__(self, model: nn.Module, *, precision: str = "fp32", compile: bool = False,
                 channels_last: bool = True, threads: int | None = None, source: str = "<model>") -> None:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"the torch backend runs fp32 or bf16, not {precision!r} "
                             f"(int8 is done by the onnxruntime and openvino backends)")
        meta = export_meta(model, **{k: v for k, v in getattr(model, "meta", {}).items()
                                     if k == "optimization"})
        super().__init__(meta, source)
        self.precision = precision
        self.compiled = compile
        self.module = model.eval()
        if threads:
            torch.set_num_threads(int(threads))
        self.channels_last = channels_last
        if channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)
        self._forward = torch.compile(self.module, dynamic=None) if compile else self.module
        self.device = next(self.module.parameters()).device

    def __call__(self, x: Tensor) -> Tensor:
        x = x.to(self.device, torch.float32)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16,
                                                    enabled=self.precision == "bf16"):
            return self._forward(x).float().contiguous()


def load_runtime(path: str | Path, *, threads: int | None = None, precision: str | None = None,
                 **kwargs: Any) -> Runtime:
    """Open an exported or optimised model by its suffix.

    ``.onnx`` -> ONNX Runtime; ``.xml`` -> OpenVINO (its ``.json`` sidecar holds the
    metadata); anything else is read as an fcnkit torch model record (a saved model,
    a training checkpoint, or a ``fcnkit optimize --backend torch`` result).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        if precision not in (None, "fp32", "int8"):
            raise ValueError(f"{path}: ONNX Runtime runs the graph as stored; precision {precision!r} not available")
        return OnnxRuntimeModel(path, threads=threads, **kwargs)
    if suffix == ".xml":
        return OpenVINOModel(path, threads=threads, precision=precision, **kwargs)
    from .torch_opt import load_optimized

    model, recipe = load_optimized(path)
    return TorchRuntime(model, precision=precision or recipe.get("precision", "fp32"),
                        compile=kwargs.pop("compile", recipe.get("compile", False)), threads=threads,
                        source=str(path), **kwargs)


__all__ = ["Runtime", "OnnxRuntimeModel", "OpenVINOModel", "TorchRuntime", "load_runtime", "export_meta",
           "sidecar_path", "META_KEY", "INPUT_NAME", "OUTPUT_NAME"]
