"""One way to open a model: ``open_model(name | path | module)`` returns a runner.

Every runner takes a float32 normalised (N, 3, H, W) tensor and returns what the
model returns: ``{"seg": logits (N, C, H, W)}`` for segmentation, the box maps
(``heatmap``, ``size``, ``offset``) for detection, both for joint models. Each carries
``.spec`` (``fcnkit.models.spec.ModelSpec``) and ``.meta`` (palette, metrics, ...), so
predict, eval, bench, optimize and serve treat an eager model, a ``.pt``/``.safetensors``
file (with its optimisation recipe), an ONNX file and an OpenVINO IR alike. Which
runner opens a file is data: ``BACKENDS``. Exported metadata travels with the file:
the ``fcnkit`` entry of ONNX ``metadata_props``, and a JSON sidecar next to an
OpenVINO ``.xml`` (``model.xml`` -> ``model.json``); exports written before the spec
(``fcnkit-export/1``, mask output "logits") still open, converted on reading.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..engine.probe import RunChoice, choose_run
from ..engine.runtime import memory_format
from ..extras import require
from ..heads import OUTPUT_KINDS, SEG_OUTPUT, output_names
from ..io import brief, check_output_file, printable
from ..models.fold import fold_batchnorm
from ..models.metadata import MetadataError, check_meta, read_spec
from ..models.saved import FORMAT_V1, load_model, read_model_spec
from ..models.spec import ModelSpec, spec_of
from ..models.zoo import resolve
from .memory import keep_freed_heap

META_KEY = "fcnkit"
META_FORMAT = "fcnkit-export/2"  # {"format", "spec": ModelSpec.to_dict(), palette, metrics, precision, ...}
META_FORMAT_V1 = "fcnkit-export/1"  # before the spec: builder "config", classes and task at the top level
INPUT_NAME = "images"
LEGACY_OUTPUT_NAMES = {"logits": SEG_OUTPUT}  # what exports before the spec called the mask output
RUNTIME_BYTES_PER_PIXEL = 2048.0  # exported runtimes cannot be probed with hooks; a conservative guess
PROBE_SIZE = 128


def export_meta(model: nn.Module, **extra: Any) -> dict:
    """Everything a runtime needs besides the graph: the spec, and the file's facts (palette, ...)."""
    meta = {k: v for k, v in model.meta.items() if k != "optimization"}
    meta.update(format=META_FORMAT, spec=spec_of(model).to_dict(), **extra)
    return json.loads(json.dumps(meta, default=_jsonable))  # plain JSON data, tuples -> lists


def read_export_meta(meta: Any, source: str) -> tuple[ModelSpec, dict]:
    """(spec, the rest) of an exported file's metadata, checked; exports written before the
    spec are converted through the same path as old model files."""
    if not isinstance(meta, Mapping):
        raise MetadataError(f"{source}: model metadata: must be a mapping, not {type(meta).__name__}")
    meta = dict(meta)
    fmt = meta.pop("format", None)
    if fmt == META_FORMAT_V1:
        meta.pop("outputs", None)
        return read_model_spec({"format": FORMAT_V1, "config": meta.pop("config", None), "meta": meta}, source)
    if fmt != META_FORMAT:
        raise MetadataError(f"{source}: model metadata: format is {fmt!r}, not {META_FORMAT!r} "
                            f"(not exported by fcnkit, or by a newer one)")
    spec = read_spec(meta.pop("spec", None), source)
    if meta.get("output", "logits") not in OUTPUT_KINDS:
        raise MetadataError(f"{source}: model metadata: output is {meta['output']!r}, not one of "
                            f"{', '.join(OUTPUT_KINDS)}")
    return spec, dict(check_meta(meta, source))


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
    """Common face of the runners: call on a normalised tensor, get the model's outputs back
    as ``{name: tensor}`` with the keys of ``spec.outputs``.

    ``spec`` says what the model is (heads, class counts and names, preprocessing, pad
    multiple); ``meta`` holds the rest its file carries (palette, metrics, recommended
    ``conf``); ``module`` is the nn.Module of torch runners (None for exported graphs).
    ``output_kind`` "labels": an export with the argmax inside gives (N, H, W) uint8 classes
    under ``LABELS_OUTPUT`` instead of the SEG head's logits (``fcnkit export --output labels``).
    """

    backend: str = "?"
    modules: tuple[str, ...] = ()  # what running it needs from the ``export`` extra
    precision: str = "fp32"
    module: nn.Module | None = None
    compiled = False  # run through torch.compile
    training = False

    def __init__(self, spec: ModelSpec, meta: Mapping, source: str) -> None:
        self.spec, self.meta, self.source = spec, dict(meta), source
        self.device = torch.device("cpu")
        self.output_kind: str = self.meta.get("output", "logits")
        self.outputs = output_names(spec.heads, self.output_kind)

    def require_scores(self, need: str, name: str | None = None) -> None:
        """ValueError if this runner gives classes instead of class scores; ``need`` says what
        needs them ("probabilities need"), ``name`` how to call the model (default: its file)."""
        if self.output_kind == "labels":
            raise ValueError(f"{name or self.source} gives class labels (exported with --output labels), not class "
                             f"scores: {need} an export with --output logits (the default)")

    def __call__(self, x: Tensor) -> dict[str, Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.source}: expected a (N, 3, H, W) image batch, got {tuple(x.shape)}")
        arrays = self._run(np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy()))
        return {k: torch.from_numpy(np.asarray(arrays[k])).to(x.device) for k in self.outputs}

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _expect_outputs(self, graph_names: Iterable[str]) -> None:
        """Check once, when the file is opened, that the graph has every output its spec names."""
        names = {LEGACY_OUTPUT_NAMES.get(n, n) for n in graph_names}
        if not set(self.outputs) <= names:
            raise ValueError(f"{self.source}: the graph's outputs are {', '.join(sorted(names))}; its spec needs "
                             f"{', '.join(self.outputs)}")

    @classmethod
    def open(cls, path: Path, *, device: torch.device, precision: str | None, threads: int | None,
             channels_last: bool | None, compile: bool | None, **options: Any) -> "Runtime":
        """Run an exported graph as stored, where its runtime runs it (``device``,
        ``channels_last`` and ``compile`` are torch's); ``options`` go to the runner."""
        return cls(path, precision=precision, threads=threads, **options)

    def expect_one_shape(self) -> None:
        """Every input from now on has one shape (a benchmark): runners that compile a
        faster network for a fixed shape do."""

    def bytes_per_pixel(self) -> float:
        """Peak working memory of one forward pass per input pixel (for tiling budgets)."""
        return RUNTIME_BYTES_PER_PIXEL

    def eval(self) -> "Runtime":  # the nn.Module calls the evaluator makes
        return self

    def train(self, mode: bool = True) -> "Runtime":
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r}, precision={self.precision})"


def _named(outputs: Iterable[tuple[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """A graph's outputs by name, from (name, array) pairs (old exports' "logits" read as "seg")."""
    return {LEGACY_OUTPUT_NAMES.get(n, n): a for n, a in outputs}


class OnnxRuntimeModel(Runtime):
    """An ``.onnx`` file run by ONNX Runtime (CUDA provider first when present)."""

    backend = "onnxruntime"
    modules = ("onnxruntime",)

    def __init__(self, path: str | Path, *, precision: str | None = None, threads: int | None = None,
                 providers: list[str] | None = None) -> None:
        path = Path(path)
        if precision not in (None, "fp32", "int8"):
            raise ValueError(f"{path}: ONNX Runtime runs the graph as stored; precision {precision!r} not available")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such ONNX file")
        require("export", "onnxruntime")  # literal: tests/test_extras.py checks each optional import
        import onnxruntime as ort

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
            raise ValueError(f"{path}: not an ONNX model ONNX Runtime can load: {_ort_reason(e)}") from None
        raw = self.session.get_modelmeta().custom_metadata_map.get(META_KEY)
        try:
            meta = json.loads(raw) if raw else {}
        except ValueError as e:
            raise MetadataError(f"{path}: model metadata: {META_KEY} is not valid JSON ({e})") from None
        super().__init__(*read_export_meta(meta, str(path)), str(path))
        self.precision = self.meta.get("precision", "fp32")
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._expect_outputs(self.output_names)

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return _named(zip(self.output_names, self.session.run(None, {self.input_name: x})))


STATIC_SHAPES = 4  # input shapes OpenVINO compiles a network for before it shares a dynamic one


class OpenVINOModel(Runtime):
    """An OpenVINO IR (``.xml`` + ``.bin`` + ``.json`` sidecar).

    ``precision`` ("fp32" or "bf16") sets the CPU plugin's inference precision hint;
    by default the one recorded at export. OpenVINO runs a network compiled for one input
    shape faster than a dynamic-shape one (it folds the padding into the first conv and
    keeps the small transposed convs in int8; compiling it also takes half the time), so
    by default the first ``STATIC_SHAPES`` shapes seen each get their own network and any
    later shape shares one dynamic network (a folder of photos of many sizes is not
    recompiled per photo). ``static=True`` always compiles per shape (keeping the last
    few), ``static=False`` always runs the dynamic network.
    """

    backend = "openvino"
    modules = ("openvino",)

    def __init__(self, xml_path: str | Path, *, threads: int | None = None, precision: str | None = None,
                 device: str = "CPU", static: bool | None = None) -> None:
        xml_path = Path(xml_path)
        if not xml_path.is_file():
            raise FileNotFoundError(f"{xml_path}: no such OpenVINO IR file")
        check_ir(xml_path)
        require("export", "openvino")
        import openvino as ov

        side = sidecar_path(xml_path)
        if not side.is_file():
            raise FileNotFoundError(f"{side}: missing metadata sidecar of {xml_path.name} "
                                    f"(re-export with `fcnkit export --format openvino`)")
        try:
            meta = json.loads(side.read_text())
        except ValueError as e:
            raise MetadataError(f"{side}: model metadata: not valid JSON ({e})") from None
        super().__init__(*read_export_meta(meta, str(side)), str(side))
        self.precision = self.meta.get("precision", "fp32")
        compute = precision or self.meta.get("inference_precision", "fp32")
        if compute not in ("fp32", "bf16"):
            raise ValueError(f"OpenVINO inference precision must be fp32 or bf16, not {compute!r}")
        self.compute_precision = compute
        if self.precision == "fp32" and compute == "bf16":
            self.precision = "bf16"
        self.core = ov.Core()
        try:
            self.model = self.core.read_model(str(xml_path))
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{xml_path}: not an OpenVINO IR OpenVINO can read: {brief(e)}") from None
        self._expect_outputs(name for port in self.model.outputs for name in port.get_names())
        self.ov_device = device  # OpenVINO's device name; inputs and outputs stay on the CPU
        self.ov_config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "bf16" if compute == "bf16" else "f32",
                                          "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            self.ov_config["INFERENCE_NUM_THREADS"] = int(threads)
        self.static = static
        self._compiled: dict[tuple[int, ...], Any] = {}  # input shape -> network; () -> the dynamic one

    def expect_one_shape(self) -> None:
        self.static = True

    def _compiled_for(self, shape: tuple[int, ...]):
        if shape in self._compiled:
            return self._compiled[shape]
        per_shape = [k for k in self._compiled if k]
        if self.static or (self.static is None and len(per_shape) < STATIC_SHAPES):
            if self.static and len(per_shape) >= STATIC_SHAPES:  # keep a few sizes, not every size ever seen
                self._compiled.pop(per_shape[0])
            model = self.model.clone()
            model.reshape({0: list(shape)})  # (N, 3, H, W) fixed
            self._compiled[shape] = self.core.compile_model(model, self.ov_device, self.ov_config)
            return self._compiled[shape]
        if () not in self._compiled:
            self._compiled[()] = self.core.compile_model(self.model, self.ov_device, self.ov_config)
        return self._compiled[()]

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        compiled = self._compiled_for(tuple(x.shape))
        result = compiled(x)
        return _named((name, result[port]) for port in compiled.outputs for name in port.get_names())  # every name


def _ort_reason(e: Exception) -> str:
    """ONNX Runtime's load error, short: ``[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model
    from x.onnx failed:Protobuf parsing failed.`` -> ``INVALID_PROTOBUF: Protobuf parsing failed.``"""
    parts = str(e).split(" : ", 3)
    if len(parts) == 4 and parts[0].strip() == "[ONNXRuntimeError]":
        detail = parts[3].rpartition("failed:")[2].strip() or parts[3].strip()
        return printable(f"{parts[2].strip()}: {detail.splitlines()[0] if detail else ''}")[:160]
    return brief(e)


def check_ir(xml_path: Path) -> None:
    """ValueError unless ``xml_path`` looks like an OpenVINO IR (an XML ``<net>`` with its ``.bin``),
    so a stray ``.xml`` gets one line instead of every OpenVINO frontend's attempt at it."""
    try:
        with open(xml_path, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise ValueError(f"{xml_path}: cannot read it ({e.strerror or e})") from None
    if b"<net " not in head and b"<net>" not in head:
        start = head.lstrip()[:20]
        raise ValueError(f"{xml_path}: not an OpenVINO IR (no <net> element; it starts with {start!r})")
    weights = xml_path.with_suffix(".bin")
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: missing weights of the OpenVINO IR {xml_path.name}")


class TorchRuntime(Runtime):
    """An eager (or ``torch.compile``d) PyTorch model with the same call as the others.

    ``precision="bf16"`` runs under CPU/CUDA autocast in bf16 (outputs come back
    float32); ``channels_last`` (default: on for CPU) uses the memory format oneDNN's
    convolutions prefer. The module is put in eval mode, on ``device`` (default: where
    it is) and channels_last, in place; ``fold_bn`` also folds its BatchNorms into the
    convolutions before them, in place (files opened by path: their module is the runner's own).
    """

    backend = "torch"

    def __init__(self, model: nn.Module, *, device: torch.device | None = None, precision: str | None = "fp32",
                 compile: bool | None = False, channels_last: bool | None = None, threads: int | None = None,
                 source: str = "<model>", fold_bn: bool = False) -> None:
        precision = precision or "fp32"
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"the torch backend runs fp32 or bf16, not {precision!r} "
                             f"(int8 is done by the onnxruntime and openvino backends)")
        super().__init__(spec_of(model), model.meta, source)
        self.precision = precision
        self.compiled = bool(compile)
        self.module = model.eval() if device is None else model.eval().to(device)
        if fold_bn:  # eager PyTorch runs BN as a pass of its own over every activation (ONNX/OpenVINO fold it)
            fold_batchnorm(self.module, inplace=True, by_order=True)
        self.device = next(self.module.parameters()).device
        if self.device.type == "cpu":
            keep_freed_heap()  # each forward pass reuses the last one's pages instead of faulting in fresh ones
        if threads:
            torch.set_num_threads(int(threads))
        self.channels_last = self.device.type == "cpu" if channels_last is None else channels_last
        if self.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)
        self._forward = torch.compile(self.module, dynamic=None) if compile else self.module
        self._bytes_per_pixel: float | None = None

    @classmethod
    def open(cls, path: Path, *, device: torch.device, precision: str | None, threads: int | None,
             channels_last: bool | None, compile: bool | None, **options: Any) -> "TorchRuntime":
        """An fcnkit torch record, its optimisation recipe (e.g. SVD, folded BN) rebuilt and its
        precision and compile setting the defaults (``options`` are exported runners'); its
        BatchNorms folded unless it is an optimised file (its recipe says; a file's module is
        nobody else's)."""
        module = load_model(path)
        recipe = module.meta.get("optimization", {})
        return cls(module, device=device, precision=precision or recipe.get("precision"), threads=threads,
                   compile=recipe.get("compile", False) if compile is None else compile,
                   channels_last=channels_last, source=str(path),
                   fold_bn=not recipe or bool(recipe.get("fold_bn")))  # as measured (--no-fold-bn too)

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16"

    def choose_run(self, shape: tuple[int, ...], *, amp: str = "auto", channels_last: bool | None = None,
                   say: Callable[[str], None] | None = print) -> RunChoice:
        """Run from now on in the precision and layout a timed probe finds fastest for inputs
        of ``shape`` on this machine (``fcnkit.engine.probe``); ``amp`` "off" keeps fp32."""
        choice = choose_run(self.module, device=self.device, shape=shape, train=False, amp=amp,
                            channels_last=channels_last, say=say)
        self.use(choice)
        return choice

    def use(self, choice: RunChoice) -> None:
        """Run from now on in ``choice``'s precision and layout (no fp16 autocast here)."""
        self.precision = "bf16" if choice.amp_dtype == torch.bfloat16 else "fp32"
        self.channels_last = choice.channels_last
        self.module.to(memory_format=memory_format(choice.channels_last))

    def __call__(self, x: Tensor) -> dict[str, Tensor]:
        x = x.to(self.device, torch.float32)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16):
            out = self._forward(x)
        return {k: v.float().contiguous() for k, v in out.items()}

    def bytes_per_pixel(self) -> float:
        """The largest (inputs + output) of any leaf layer on a ``PROBE_SIZE``^2 input, times 2
        for allocator slack and retained skip features, measured once. It errs high for the
        reference geometry (its 100-pixel pad costs most on a small probe)."""
        if self._bytes_per_pixel is None:
            peak = 0

            def hook(_module: nn.Module, inputs: tuple, output: Any) -> None:
                nonlocal peak
                peak = max(peak, sum(t.numel() * t.element_size() for t in (*inputs, output)  # leaf layers
                                     if isinstance(t, Tensor)))

            handles = [m.register_forward_hook(hook) for m in self.module.modules() if not list(m.children())]
            try:
                self(torch.zeros(1, 3, PROBE_SIZE, PROBE_SIZE, device=self.device))
            finally:
                for h in handles:
                    h.remove()
            self._bytes_per_pixel = 2.0 * peak / PROBE_SIZE**2
        return self._bytes_per_pixel


class CallableRuntime(Runtime):
    """Any callable with a ``spec`` (and optionally ``meta``) that returns the spec's outputs
    as a dict: a stand-in model."""

    backend = "callable"

    def __init__(self, fn: Callable[[Tensor], Mapping[str, Tensor]], device: torch.device) -> None:
        super().__init__(spec_of(fn), vars(fn).get("meta") or {}, type(fn).__name__)
        self.fn, self.device = fn, device

    def __call__(self, x: Tensor) -> dict[str, Tensor]:
        with torch.inference_mode():
            out = self.fn(x)
        return {k: torch.as_tensor(out[k]).float().to(self.device) for k in self.spec.outputs}


@dataclass(frozen=True)
class Backend:
    """How one backend's model files are named and opened (``fcnkit.export.optimize`` adds,
    under the same names, how they are built and written).

    ``runner``: the Runtime whose ``open`` runs one (its ``backend`` names it, its ``modules``
    are what running needs from the ``export`` extra); ``suffix``: its files' (a torch record
    may also have any suffix no other backend claims); ``companions``: suffixes of the files
    beside it, its weights first (an OpenVINO IR's ``.bin``, then the metadata sidecar)."""

    runner: type[Runtime]
    suffix: str
    companions: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.runner.backend

    @property
    def modules(self) -> tuple[str, ...]:
        return self.runner.modules

    def files(self, path: str | Path) -> list[Path]:
        """Every file of the model at ``path``, ``path`` last (written last, it marks the model done)."""
        path = Path(path)
        return [path.with_suffix(s) for s in self.companions] + [path]

    def check_output(self, path: str | Path, what: str) -> Path:
        """``path`` and the files written beside it can be written (``check_output_file`` on each):
        a ValueError naming the one that cannot, before any work; returns ``Path(path)``."""
        *companions, path = self.files(path)
        path = check_output_file(path, suffixes=(self.suffix,), what=what)
        for other in companions:
            check_output_file(other, what=f"{what}'s companion file")
        return path


BACKENDS = {b.name: b for b in (
    Backend(TorchRuntime, ".pt"),
    Backend(OnnxRuntimeModel, ".onnx"),
    Backend(OpenVINOModel, ".xml", companions=(".bin", ".json")),
)}


def backend_of(path: str | Path) -> Backend:
    """The backend that runs the model file ``path``, by its suffix; torch for any suffix no
    other backend claims (a saved model, a training checkpoint, a ``.safetensors`` release)."""
    suffix = Path(path).suffix.lower()
    return next((b for b in BACKENDS.values() if b.suffix == suffix), BACKENDS["torch"])


def open_model(model: nn.Module | str | Path | Callable, *, device: str | torch.device | None = None,
               precision: str | None = None, threads: int | None = None, channels_last: bool | None = None,
               compile: bool | None = None, **options: Any) -> Runtime:
    """The runner for a weights name, a model file or a module.

    A file opens with the backend its suffix names (``BACKENDS``: ``.onnx`` -> ONNX
    Runtime, ``.xml`` -> OpenVINO with its ``.json`` sidecar, anything else an fcnkit
    torch record whose recipe and settings are rebuilt); ``options`` go to the exported
    runners. A runner is returned as it is, an nn.Module runs as it is; any other callable
    with a ``spec`` is wrapped.
    ``device`` places torch models (default: CUDA when available); ``channels_last``
    defaults to on for CPU.
    """
    if isinstance(model, Runtime):  # opened already (e.g. with options of its own): run it as it is
        asked = dict(device=device, precision=precision, threads=threads, channels_last=channels_last,
                     compile=compile, **options)
        given = {k: v for k, v in asked.items() if v is not None}
        if given:
            raise ValueError(f"{model.source} is opened already; open it with {', '.join(sorted(given))} instead")
        return model
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(model, (str, Path)):
        path = resolve(model)  # a file, or the name of registered weights
        return backend_of(path).runner.open(path, device=dev, precision=precision, threads=threads,
                                            channels_last=channels_last, compile=compile, **options)
    if isinstance(model, nn.Module):
        return TorchRuntime(model, device=dev, precision=precision, threads=threads, channels_last=channels_last,
                            compile=compile, source=type(model).__name__)
    if callable(model):
        return CallableRuntime(model, dev)
    raise ValueError(f"expected a weights name, a model path, an nn.Module or a callable, got {type(model).__name__}")


__all__ = ["BACKENDS", "Backend", "CallableRuntime", "INPUT_NAME", "META_KEY", "OnnxRuntimeModel", "OpenVINOModel",
           "Runtime", "TorchRuntime", "backend_of", "check_ir", "export_meta", "open_model", "read_export_meta",
           "sidecar_path"]
