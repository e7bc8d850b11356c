"""Build an optimised variant of a model, measure it, and keep it only if accuracy holds.

A variant is a recipe applied to the fp32 model: fold BN, factorise fc6/fc7 by
truncated SVD, then hand it to a backend (eager/compiled torch, ONNX Runtime,
OpenVINO) at a precision (fp32, bf16, int8 calibrated on real images). Every
variant is judged the same way: latency and throughput at the data's size, file
size, and the change of mean IU (the paper's confusion-matrix metric) against the
fp32 model on the same validation images. A variant that costs more than the
budget is refused, and nothing is written.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from ..engine.evaluate import Sample, agreement, load_samples, mean_iu, predict_all
from ..models.saved import load_model
from ..profile import count_flops
from .bench import BenchRow, time_callable
from ..models.fold import count_batchnorms, fold_batchnorm
from .onnx_export import ONNX_MODULES, export_onnx, save_proto, set_metadata
from .openvino_export import ir_files, onnx_to_openvino, save_ir
from .quantize import quantize_onnx, quantize_openvino, quantize_openvino_accuracy_control
from ..extras import require
from ..io import atomic_write_text, check_output_dir, check_output_file, next_run_dir
from ..inference.runtime import META_KEY, OnnxRuntimeModel, OpenVINOModel, TorchRuntime, export_meta
from ..models.svd import Spectrum, apply_svd, fc_convs, spectrum
from .torch_opt import save_optimized

BACKENDS = ("torch", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8")
SUFFIX = {"torch": ".pt", "onnxruntime": ".onnx", "openvino": ".xml"}


def backend_modules(backend: str, precision: str) -> tuple[str, ...]:
    """The optional modules (all in the ``export`` extra) a variant on ``backend`` needs."""
    if backend == "torch":
        return ()
    mods = (*ONNX_MODULES, "onnxruntime")  # every exported variant is the verified ONNX export first
    if backend == "openvino":
        mods += ("openvino", "nncf") if precision == "int8" else ("openvino",)
    return mods


def check_out(out: str | Path, backend: str) -> Path:
    """``out`` for a ``backend`` variant (``.pt`` / ``.onnx`` / ``.xml`` and an IR's ``.bin`` and
    ``.json``) can be written: ValueError naming it otherwise, before any work."""
    out = check_output_file(out, suffixes=(SUFFIX[backend],), what=f"{backend} variant")
    if backend == "openvino":
        for other in ir_files(out)[:-1]:
            check_output_file(other, what="OpenVINO IR's companion file")
    return out


class BudgetExceeded(RuntimeError):
    """The variant loses more mean IU than allowed; nothing was written (``row``: its measurements)."""

    row: BenchRow | None = None


@dataclass
class Reference:
    """The fp32 model's predictions and mean IU on the validation images: the yardstick."""

    preds: list[Tensor]
    mean_iu: float
    num_classes: int

    @classmethod
    def of(cls, model: nn.Module, samples: list[Sample]) -> "Reference":
        model = model.eval()
        device = next(model.parameters()).device
        preds = predict_all(lambda x: model(x.to(device)), samples)
        return cls(preds, mean_iu(preds, samples, model.num_classes), model.num_classes)


@dataclass
class Variant:
    """A built, runnable variant whose files wait in a staging folder until accepted."""

    name: str
    backend: str
    precision: str
    recipe: dict
    runtime: Callable[[Tensor], Tensor]
    torch_model: nn.Module  # the transformed torch model (FLOPs, torch saving)
    staged: list[Path] = field(default_factory=list)  # files to move; the last one marks "done"
    size_bytes: int = 0


def svd_spectra(model: nn.Module) -> dict[str, Spectrum]:
    return {name: spectrum(conv) for name, conv in fc_convs(model).items()}


def transform(model: nn.Module, *, fold_bn: bool = True, svd: dict[str, int] | None = None,
              spectra: dict[str, Spectrum] | None = None) -> tuple[nn.Module, dict]:
    """A transformed copy of ``model`` and the recipe describing it (the input is untouched)."""
    m = copy.deepcopy(model).eval()
    recipe: dict = {}
    if fold_bn and count_batchnorms(m):
        m, n = fold_batchnorm(m, inplace=True)
        recipe["fold_bn"] = True
        recipe["folded"] = n
    if svd:
        apply_svd(m, svd, spectra)
        recipe["svd"] = {k: int(v) for k, v in svd.items()}
    return m, recipe


def build_variant(model: nn.Module, *, backend: str, precision: str, workdir: str | Path,
                  calibration: list[Tensor] | None = None, svd: dict[str, int] | None = None,
                  spectra: dict[str, Spectrum] | None = None, fold_bn: bool = True, compile: bool = False,
                  threads: int | None = None, static: bool = True,
                  accuracy_control: tuple[list[Sample], float] | None = None,
                  onnx_cache: dict | None = None) -> Variant:
    """Transform ``model`` and convert it for ``backend`` at ``precision``, staged in ``workdir``.

    ``accuracy_control=(samples, max_drop)`` (OpenVINO int8) lets NNCF keep the layers that
    cost most mean IU on ``samples`` in float until the drop is within ``max_drop`` points.
    ``onnx_cache`` (a dict kept by the caller) reuses the verified fp32 ONNX export of an
    identical transform instead of exporting again (minutes for full-width VGG-16).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision == "int8" and backend == "torch":
        raise ValueError("int8 is provided by the onnxruntime and openvino backends (their quantisation "
                         "tooling); the torch backend runs fp32 or bf16")
    if precision == "bf16" and backend == "onnxruntime":
        raise ValueError("ONNX Runtime's CPU provider has no bf16 convolutions; use --backend openvino "
                         "or torch for bf16")
    if accuracy_control and (backend, precision) != ("openvino", "int8"):
        raise ValueError("accuracy-controlled quantisation is NNCF's: use --backend openvino --precision int8")
    if precision == "int8" and not calibration:
        raise ValueError("int8 needs calibration images (--calib DATA)")
    require("export", *backend_modules(backend, precision))
    m, recipe = transform(model, fold_bn=fold_bn, svd=svd, spectra=spectra)
    recipe.update(backend=backend, precision=precision)
    name = _variant_name(backend, precision, recipe)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    meta = export_meta(m, precision=precision, optimization=dict(recipe))
    if backend == "torch":
        recipe["compile"] = bool(compile)
        runtime = TorchRuntime(copy.deepcopy(m), precision=precision, compile=compile, threads=threads)
        size = sum(t.numel() * t.element_size() for t in m.state_dict().values())
        return Variant(name, backend, precision, recipe, runtime, m, [], size)
    key = json.dumps({k: recipe.get(k) for k in ("fold_bn", "svd")}, sort_keys=True)
    onnx_fp32 = (onnx_cache or {}).get(key)
    if onnx_fp32 is None or not Path(onnx_fp32).is_file():
        onnx_fp32 = workdir / f"{name}.fp32.onnx"
        export_onnx(m, onnx_fp32, meta=meta, sizes=((64, 96), (45, 77)))  # parity of the transformed net
        if onnx_cache is not None:
            onnx_cache[key] = onnx_fp32
    if backend == "onnxruntime":
        path = workdir / f"{name}.onnx"
        if precision == "fp32":
            _rewrite_onnx_meta(onnx_fp32, meta, out=path)  # its own copy: the cached export stays put
        else:
            quantize_onnx(onnx_fp32, path, calibration)
            _rewrite_onnx_meta(path, meta)
        runtime = OnnxRuntimeModel(path, threads=threads)
        return Variant(name, backend, precision, recipe, runtime, m, [path], path.stat().st_size)
    ov_model = onnx_to_openvino(onnx_fp32)
    if precision == "int8" and accuracy_control:
        val, max_drop = accuracy_control
        ov_model = quantize_openvino_accuracy_control(ov_model, calibration, [(v.image, v.mask) for v in val],
                                                      m.num_classes, max_drop=max_drop)
        recipe["accuracy_control"] = max_drop
    elif precision == "int8":
        ov_model = quantize_openvino(ov_model, calibration)
    meta["inference_precision"] = "bf16" if precision == "bf16" else "fp32"
    xml = workdir / f"{name}.xml"
    save_ir(ov_model, xml, meta)
    runtime = OpenVINOModel(xml, threads=threads, static=static)
    files = ir_files(xml)
    return Variant(name, backend, precision, recipe, runtime, m, files, xml.with_suffix(".bin").stat().st_size)


def _variant_name(backend: str, precision: str, recipe: dict) -> str:
    name = f"{backend}-{precision}"
    if recipe.get("svd"):
        ranks = sorted(set(recipe["svd"].values()))
        name += "-svd" + "_".join(str(r) for r in ranks)
    return name


def _rewrite_onnx_meta(path: Path, meta: dict, *, out: Path | None = None) -> None:
    require("export", "onnx")
    import onnx

    proto = onnx.load(str(path))
    set_metadata(proto, meta)
    save_proto(proto, out or path)


def measure(variant: Variant, samples: list[Sample], reference: Reference, *, warmup: int = 2,
            repeats: int = 5, flops: float | None = None) -> BenchRow:
    """Accuracy on every sample against ``reference``, then latency on the first sample."""
    preds = predict_all(variant.runtime, samples)
    miu = mean_iu(preds, samples, reference.num_classes)
    timing = time_callable(variant.runtime, samples[0].image, warmup=warmup, repeats=repeats)
    return BenchRow(variant.name, variant.backend, variant.precision, timing.median_ms, timing.p90_ms,
                    timing.images_per_s, gflop=None if flops is None else flops / 1e9,
                    size_mb=variant.size_bytes / 2**20, mean_iu=miu, mean_iu_change=miu - reference.mean_iu,
                    agreement=agreement(preds, reference.preds))


def check_budget(row: BenchRow, max_drop: float) -> None:
    if row.mean_iu_change is not None and -row.mean_iu_change > max_drop:
        raise BudgetExceeded(f"refused {row.name}: mean IU {row.mean_iu:.2f} is {-row.mean_iu_change:.2f} points "
                             f"below the fp32 model's {row.mean_iu - row.mean_iu_change:.2f} "
                             f"(--max-drop {max_drop:g}); nothing written")


def write_variant(variant: Variant, out: str | Path, results: dict) -> Path:
    """Move the accepted variant to ``out`` with its measured results in its metadata."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    recipe = {**variant.recipe, "results": results}
    if variant.backend == "torch":
        save_optimized(variant.torch_model, out, recipe)
        return out
    if variant.backend == "onnxruntime":
        require("export", "onnx")
        import onnx

        proto = onnx.load(str(variant.staged[-1]))
        meta = json.loads({p.key: p.value for p in proto.metadata_props}.get(META_KEY, "{}"))
        set_metadata(proto, {**meta, "optimization": recipe})
        save_proto(proto, out)
        return out
    staged_xml = variant.staged[-1]
    meta = json.loads(variant.staged[1].read_text())
    atomic_write_text(variant.staged[1], json.dumps({**meta, "optimization": recipe}, indent=1))
    for src, dst in zip(ir_files(staged_xml), ir_files(out)):
        os.replace(src, dst)
    return out


def default_output(checkpoint: str | Path, variant: Variant, folder: str | Path) -> Path:
    """``<folder>/<model stem>.<variant><suffix>``: ``folder`` is a fresh ``runs/optimize/N``,
    never the model's own folder (which may be read-only, or the package's weights)."""
    return Path(folder) / f"{Path(checkpoint).stem}.{variant.name}{SUFFIX[variant.backend]}"


def choose_svd_rank(model: nn.Module, samples: list[Sample], reference: Reference, budget: float, *,
                    spectra: dict[str, Spectrum], ranks: list[int] | None = None,
                    log: Callable[[str], None] = print) -> dict[str, int]:
    """The smallest common fc6/fc7 rank (from a doubling ladder) whose eager fp32 mean-IU drop
    is within ``budget``; ValueError if none is."""
    full = min(s.full_rank for s in spectra.values())
    ladder = ranks or [r for r in (32, 64, 128, 256, 512, 1024, 2048) if r < full] or [full]
    for r in sorted(ladder):
        m, _ = transform(model, fold_bn=False, svd={n: r for n in spectra}, spectra=spectra)
        preds = predict_all(m, samples)
        drop = reference.mean_iu - mean_iu(preds, samples, reference.num_classes)
        log(f"svd rank {r}: mean IU change {-drop:+.2f} (budget {budget:g})")
        if drop <= budget:
            return {n: r for n in spectra}
    raise ValueError(f"no SVD rank in {sorted(ladder)} keeps the mean-IU drop within {budget:g} points")


def ranks_for_energy(spectra: dict[str, Spectrum], energy: float) -> dict[str, int]:
    return {name: s.energy_rank(energy) for name, s in spectra.items()}


def staging_dir(out_dir: str | Path) -> tempfile.TemporaryDirectory:
    """A temp folder beside the output so accepted files are renamed, not copied, into place."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(dir=out_dir, prefix=".fcnkit-optimize.")


@dataclass
class Optimized:
    """What ``optimize`` kept: the file, its measured row and the fp32 yardstick."""

    path: Path
    row: BenchRow
    reference_mean_iu: float
    svd: dict[str, int] | None


def optimize(checkpoint: str | Path, *, val: str, val_split: str = "val", backend: str = "openvino",
             precision: str = "fp32", calib: str | None = None, calib_split: str = "train", calib_limit: int = 32,
             limit: int | None = None, svd_rank: str | None = None, svd_energy: float | None = None,
             max_drop: float = 1.0, accuracy_control: bool = False, fold_bn: bool = True, compile: bool = False,
             threads: int | None = None, warmup: int = 2, repeats: int = 10, out: str | Path | None = None,
             say: Callable[[str], None] = print) -> Optimized:
    """``fcnkit optimize`` as one call: build the variant (fold BN, SVD of fc6/fc7 at
    ``svd_rank`` -- ranks "r" / "r6,r7" / "auto" -- or ``svd_energy``, then the backend at
    ``precision``, int8 calibrated on ``calib``), measure it against the fp32 model on
    ``val``, and write it (default: under a new ``runs/optimize/N``) only if it loses at most
    ``max_drop`` mean IU points. Raises ``BudgetExceeded`` (nothing written) otherwise."""
    if precision == "int8" and not calib:
        raise ValueError("int8 needs calibration data (calib: real images to calibrate activation ranges)")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, not {limit}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    # before minutes of work: the extras the backend needs, and a place the result can go
    require("export", *backend_modules(backend, precision))
    if out is not None:
        check_out(out, backend)
    out_dir = check_output_dir(Path(out).resolve().parent if out else next_run_dir("optimize"))
    if threads:
        torch.set_num_threads(threads)
    model = load_model(checkpoint)
    if model.task != "segmentation":
        raise ValueError(f"{checkpoint}: a {model.task} model; optimize judges variants by mean IU, which only "
                         f"segmentation models have. Export it with fcnkit export (ONNX / OpenVINO, parity "
                         f"checked on every output)")
    say(f"loading {val} ({val_split}) ...")
    samples = load_samples(val, val_split, model.preprocessing, limit=limit)
    calibration = None
    if precision == "int8":
        calibration = [s.image for s in load_samples(calib, calib_split, model.preprocessing, limit=calib_limit)]
    reference = Reference.of(model, samples)
    say(f"fp32 model: mean IU {reference.mean_iu:.1f} on {len(samples)} {val_split} images")
    svd = spectra = None
    # with two lossy steps, the SVD rank search and NNCF's accuracy control each get half the budget
    budget = max_drop / 2 if (svd_rank or svd_energy) and precision != "fp32" else max_drop
    if svd_rank or svd_energy:
        spectra = svd_spectra(model)
        if svd_energy:
            svd = ranks_for_energy(spectra, svd_energy)
        elif svd_rank == "auto":
            svd = choose_svd_rank(model, samples, reference, budget, spectra=spectra)
        else:
            ranks = [int(r) for r in str(svd_rank).split(",")]
            svd = dict(zip(spectra, ranks * 2 if len(ranks) == 1 else ranks))
        say(f"svd ranks {svd}")
    with staging_dir(out_dir) as work:
        variant = build_variant(model, backend=backend, precision=precision, workdir=work, calibration=calibration,
                                svd=svd, spectra=spectra, fold_bn=fold_bn, compile=compile, threads=threads,
                                accuracy_control=(samples, budget) if accuracy_control else None)
        flops, _ = count_flops(variant.torch_model, samples[0].image)
        row = measure(variant, samples, reference, warmup=warmup, repeats=repeats, flops=flops)
        try:
            check_budget(row, max_drop)
        except BudgetExceeded as e:
            e.row = row  # what was measured, for the report
            raise
        path = Path(out) if out else default_output(checkpoint, variant, out_dir)
        results = {k: v for k, v in row.to_dict().items() if k not in ("name", "backend", "precision")}
        results.update(val=f"{val} ({val_split}, {len(samples)} images)", fp32_mean_iu=reference.mean_iu)
        write_variant(variant, path, results)
    return Optimized(path, row, reference.mean_iu, svd)


__all__ = ["BudgetExceeded", "Optimized", "Reference", "Variant", "optimize",
           "build_variant", "measure",
           "check_budget", "write_variant", "default_output", "choose_svd_rank", "ranks_for_energy",
           "svd_spectra", "transform", "staging_dir", "backend_modules", "check_out", "BACKENDS", "PRECISIONS"]
