"""What the predictor runs: a callable from normalised (N, 3, H, W) float32 to logits.

Everything the predictor needs from a model is that call plus ``meta`` (classes,
palette) and ``preprocessing``. An ``nn.Module``, a saved model / training checkpoint
(``fcnkit.models.saved.load_model``) and an exported model (``.onnx`` / OpenVINO
``.xml`` through ``fcnkit.export.runtime.load_runtime``) all reduce to that, so they
all go through the same tiling, TTA and postprocessing and give the same masks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..models.weights import IMAGENET, Preprocessing
from ..models.zoo import resolve

EXPORTED_SUFFIXES = (".onnx", ".xml")
RUNTIME_BYTES_PER_PIXEL = 2048.0  # exported runtimes cannot be probed with hooks; a conservative guess
PROBE_SIZE = 128


class Backend:
    """A model reduced to ``__call__(x) -> logits`` (or a dict of dense maps) plus its metadata.

    ``x`` is normalised float32 (N, 3, H, W) on ``device``; nn.Modules run in eval mode
    under ``torch.inference_mode``, channels_last and (optionally) bf16 autocast.
    """

    def __init__(self, fn: Callable[[Tensor], Any], *, preprocessing: Preprocessing, meta: Mapping,
                 device: torch.device, module: nn.Module | None = None, bf16: bool = False,
                 channels_last: bool = False, pad_multiple: int = 32, source: str = "model") -> None:
        self.fn = fn
        self.preprocessing = preprocessing
        self.meta = dict(meta)
        self.device = device
        self.module = module
        self.bf16 = bf16
        self.channels_last = channels_last
        self.pad_multiple = pad_multiple
        self.source = source
        self._bytes_per_pixel: float | None = None

    def __call__(self, x: Tensor) -> Tensor | dict[str, Tensor]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16
                    else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            out = self.fn(x)
        if isinstance(out, Mapping):
            return {k: v.float() for k, v in out.items()}
        if not isinstance(out, Tensor):
            out = torch.as_tensor(out)
        return out.float().to(self.device)

    def bytes_per_pixel(self) -> float:
        """Peak working memory of one forward pass per input pixel (measured once, by probe).

        For an nn.Module: the largest (inputs + output) of any leaf layer on a
        ``PROBE_SIZE``^2 input, times 2 for allocator slack and retained skip features.
        It errs high for the reference geometry (its 100-pixel pad costs most on a small probe).
        """
        if self._bytes_per_pixel is None:
            self._bytes_per_pixel = (_probe_bytes_per_pixel(self) if self.module is not None
                                     else RUNTIME_BYTES_PER_PIXEL)
        return self._bytes_per_pixel


def _probe_bytes_per_pixel(backend: Backend) -> float:
    peak = 0

    def hook(_module: nn.Module, inputs: tuple, output: Any) -> None:
        nonlocal peak
        outs = output.values() if isinstance(output, Mapping) else [output]
        total = sum(t.numel() * t.element_size() for t in (*inputs, *outs) if isinstance(t, Tensor))
        peak = max(peak, total)

    leaves = [m for m in backend.module.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        backend(torch.zeros(1, 3, PROBE_SIZE, PROBE_SIZE, device=backend.device))
    finally:
        for h in handles:
            h.remove()
    return 2.0 * peak / PROBE_SIZE**2


def load_backend(model: nn.Module | str | Path | Callable, *, device: str | torch.device | None = None,
                 bf16: bool = False, channels_last: bool | None = None) -> Backend:
    """An nn.Module, a saved model / checkpoint path, an exported ``.onnx``/``.xml`` path,
    or any callable with ``preprocessing`` (and optionally ``meta``) -> ``Backend``."""
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(model, (str, Path)):
        path = resolve(model)  # a file, or the name of registered weights
        if path.suffix.lower() in EXPORTED_SUFFIXES:
            from ..export.runtime import load_runtime  # lazy: onnxruntime/openvino are optional extras

            runtime = load_runtime(path)
            return Backend(runtime, preprocessing=_preprocessing_of(runtime), meta=getattr(runtime, "meta", {}),
                           device=torch.device("cpu"), source=str(path))
        from ..models.saved import load_model

        module = load_model(path)  # also `fcnkit optimize --backend torch` results (SVD, folded BN)
        bf16 = bf16 or module.meta.get("optimization", {}).get("precision") == "bf16"
        source = str(path)
    elif isinstance(model, nn.Module):
        module, source = model, type(model).__name__
    elif callable(model):
        return Backend(model, preprocessing=_preprocessing_of(model), meta=getattr(model, "meta", {}),
                       device=dev, source=type(model).__name__)
    else:
        raise ValueError(f"expected an nn.Module, a model path or a callable, got {type(model).__name__}")
    module = module.eval().to(dev)
    if channels_last is None:
        channels_last = dev.type == "cpu"  # faster convolutions on CPU (oneDNN's preferred layout)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    return Backend(module, preprocessing=_preprocessing_of(module), meta=getattr(module, "meta", {}) or {},
                   device=dev, module=module, bf16=bf16, channels_last=channels_last,
                   pad_multiple=int(getattr(module, "pad_multiple", 32)) or 32, source=source)


def _preprocessing_of(model: Any) -> Preprocessing:
    pre = getattr(model, "preprocessing", None)
    if pre is None:
        return IMAGENET
    if isinstance(pre, Mapping):
        return Preprocessing.from_dict(pre)
    return pre
