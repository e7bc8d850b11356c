"""Where and in what precision to run: device choice, autocast dtype, memory format.

On CUDA bf16 autocast needs no loss scaling (fp16 gets a GradScaler). On a CPU bf16 pays
only where the CPU has bf16 units (AVX512-BF16 / AMX) *and* the model's layers have fast
bf16 kernels there, which ``fcnkit.engine.probe`` measures rather than assumes.
"""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path

import torch


def resolve_device(name: str = "auto", *, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> ``cuda:<local_rank>`` if CUDA is available, else CPU."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} requested but CUDA is not available; use device=cpu")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    return device


def cpu_model() -> str:
    """The CPU's model name (``lscpu``'s "Model name"): what every timing depends on."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AVX512-BF16 or AMX)."""
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(cpu, probe, None)
        if fn is not None and fn():
            return True
    return False


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` in auto|bf16|fp16|off on ``device`` (None = fp32).

    ``auto`` on CUDA is bf16 where supported, else fp16. On a CPU whether bf16 pays depends
    on the CPU and the model (``fcnkit.engine.probe.choose_run`` measures it); without a
    measurement ``auto`` means fp32 there."""
    if amp == "off":
        return None
    if amp == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise ValueError("amp='fp16' needs CUDA; use amp='bf16' on CPU")
        return torch.float16
    raise ValueError(f"amp must be auto, bf16, fp16 or off, not {amp!r}")


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed-precision context for the forward pass (a no-op when ``dtype`` is None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


__all__ = ["autocast", "cpu_has_fast_bf16", "cpu_model", "memory_format", "resolve_amp", "resolve_device"]
