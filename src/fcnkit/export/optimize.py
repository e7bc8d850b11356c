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
import dataclasses
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ..engine.samples import LabelledImage, agreement, load_samples, mean_iu, predict_all
from ..extras import require
from ..heads import SEG, output_names
from ..inference.runtime import (BACKENDS, OnnxRuntimeModel, OpenVINOModel, Runtime, TorchRuntime,
                                 export_meta, sidecar_path)
from ..io import atomic_write_text, check_output_dir, next_run_dir
from ..models.fold import count_batchnorms, fold_batchnorm
from ..models.saved import load_model
from ..models.spec import spec_of
from ..models.svd import Spectrum, apply_svd, fc_convs, spectrum
from ..models.subpixel import subpixel_upsampling
from ..nn import pixel_classes
from ..profile import count_flops
from .bench import BenchRow, Timing, time_callable
from .onnx_export import ONNX_MODULES, export_onnx, save_proto, set_metadata
from .openvino_export import onnx_to_openvino, save_ir
from .quantize import quantize_onnx, quantize_openvino, quantize_openvino_accuracy_control
from .torch_opt import save_optimized

PRECISIONS = ("fp32", "bf16", "int8")
VIA_ONNX = (*ONNX_MODULES, "onnxruntime")  # every exported variant is the verified ONNX export first


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
    def of(cls, model: nn.Module, samples: list[LabelledImage]) -> "Reference":
        model = model.eval()
        device = next(model.parameters()).device
        num_classes = spec_of(model).num_classes
        preds = predict_all(lambda x: model(x.to(device)), samples)
        return cls(preds, mean_iu(preds, samples, num_classes), num_classes)


@dataclass
class Variant:
    """A transformed model and its backend's runner, whose files wait in a staging folder
    until accepted (the backend's ``build`` sets ``runtime``, ``staged`` and ``size_bytes``)."""

    name: str
    backend: str
    precision: str
    recipe: dict  # how it was made; its backend's build adds its own settings
    torch_model: nn.Module  # the transformed torch model (BN folded, SVD): FLOPs, torch saving, exports
    runtime: Runtime | None = None
    staged: list[Path] = field(default_factory=list)  # its files, in its backend's ``files`` order
    size_bytes: int = 0

    @property
    def output(self) -> str:
        """What the SEG head of its file gives: "logits", or "labels" (the argmax inside)."""
        return self.recipe.get("output", "logits")

    def export_meta(self) -> dict:
        labels = {"output": "labels"} if self.output == "labels" else {}
        return export_meta(self.torch_model, precision=self.precision, optimization=dict(self.recipe), **labels)


# A backend's build takes the variant, its staging folder and the options of ``build_variant``.

def _build_torch(v: Variant, work: Path, *, threads: int | None, compile: bool, **_: object) -> None:
    v.recipe["compile"] = compile
    v.runtime = TorchRuntime(copy.deepcopy(v.torch_model), precision=v.precision, compile=compile, threads=threads,
                             channels_last=True, fold_bn=bool(v.recipe.get("fold_bn")))  # timm's blocks too
    v.size_bytes = sum(t.numel() * t.element_size() for t in v.torch_model.state_dict().values())


def _onnx_fp32(v: Variant, work: Path, onnx_cache: dict | None) -> Path:
    """The verified fp32 ONNX export of the variant's model; ``onnx_cache`` (kept by the
    caller) reuses the export of an identical transform (minutes for full-width VGG-16)."""
    key = json.dumps({k: v.recipe.get(k) for k in ("fold_bn", "svd", "subpixel", "output")}, sort_keys=True)
    path = (onnx_cache or {}).get(key)
    if path is None or not Path(path).is_file():
        path = work / f"{v.name}.fp32.onnx"
        export_onnx(v.torch_model, path, meta=v.export_meta(), sizes=((64, 96), (45, 77)),  # parity of the transform
                    output=v.output)
        if onnx_cache is not None:
            onnx_cache[key] = path
    return path


def _build_onnxruntime(v: Variant, work: Path, *, threads: int | None, calibration: list[Tensor] | None,
                       onnx_cache: dict | None, **_: object) -> None:
    fp32, path = _onnx_fp32(v, work, onnx_cache), work / f"{v.name}.onnx"
    if v.precision == "int8":
        quantize_onnx(fp32, path, calibration)
    _rewrite_onnx_meta(path if v.precision == "int8" else fp32, v.export_meta(), out=path)  # fp32: a copy (cache kept)
    v.runtime, v.staged, v.size_bytes = OnnxRuntimeModel(path, threads=threads), [path], path.stat().st_size


def _build_openvino(v: Variant, work: Path, *, threads: int | None, calibration: list[Tensor] | None,
                    onnx_cache: dict | None, static: bool, accuracy_control: tuple[list[LabelledImage], float] | None,
                    **_: object) -> None:
    meta = v.export_meta()
    ov_model = onnx_to_openvino(_onnx_fp32(v, work, onnx_cache))
    if v.precision == "int8" and accuracy_control:
        val, max_drop = accuracy_control
        ov_model = quantize_openvino_accuracy_control(ov_model, calibration, [(s.image, s.mask) for s in val],
                                                      spec_of(v.torch_model).num_classes, max_drop=max_drop)
        v.recipe["accuracy_control"] = max_drop
    elif v.precision == "int8":
        ov_model = quantize_openvino(ov_model, calibration)
    meta["inference_precision"] = "bf16" if v.precision == "bf16" else "fp32"
    xml = work / f"{v.name}.xml"
    save_ir(ov_model, xml, meta)
    v.runtime, v.staged = OpenVINOModel(xml, threads=threads, static=static), BACKENDS["openvino"].files(xml)
    v.size_bytes = v.staged[0].stat().st_size  # the weights (.bin)


def _rewrite_onnx_meta(path: Path, meta: dict, *, out: Path) -> None:
    require("export", "onnx")
    import onnx

    proto = onnx.load(str(path))
    set_metadata(proto, meta)
    save_proto(proto, out)


def _write_torch(v: Variant, out: Path, recipe: dict) -> None:
    save_optimized(v.torch_model, out, recipe)


def _write_onnx(v: Variant, out: Path, recipe: dict) -> None:
    _rewrite_onnx_meta(v.staged[-1], {**v.export_meta(), "optimization": recipe}, out=out)  # what staging wrote


def _write_openvino(v: Variant, out: Path, recipe: dict) -> None:
    side = sidecar_path(v.staged[-1])
    atomic_write_text(side, json.dumps({**json.loads(side.read_text()), "optimization": recipe}, indent=1))
    for src, dst in zip(v.staged, BACKENDS["openvino"].files(out)):
        os.replace(src, dst)


@dataclass(frozen=True)
class Builder:
    """How optimize makes a variant for one backend (``BACKENDS[name]`` says how its files
    are named and opened): ``build`` converts it in a staging folder, ``write`` puts an
    accepted one at ``out`` with its recipe; ``modules``: what building needs from the
    ``export`` extra (``int8_modules`` besides for int8); ``refuses``: precisions it has not,
    with the reason; ``accuracy_control``: whether its int8 can keep costly layers in float;
    ``labels``: whether its files can give classes (the argmax inside the graph)."""

    build: Callable[..., None]
    write: Callable[[Variant, Path, dict], None]
    modules: tuple[str, ...] = ()
    int8_modules: tuple[str, ...] = ()
    refuses: Mapping[str, str] = field(default_factory=dict)
    accuracy_control: bool = False
    labels: bool = True


BUILDERS = {
    "torch": Builder(_build_torch, _write_torch, labels=False, refuses={
        "int8": "int8 is provided by the onnxruntime and openvino backends (their quantisation tooling); the "
                "torch backend runs fp32 or bf16"}),
    "onnxruntime": Builder(_build_onnxruntime, _write_onnx, modules=VIA_ONNX, refuses={
        "bf16": "ONNX Runtime's CPU provider has no bf16 convolutions; use --backend openvino or torch for bf16"}),
    "openvino": Builder(_build_openvino, _write_openvino, modules=(*VIA_ONNX, *BACKENDS["openvino"].modules),
                        int8_modules=("nncf",), accuracy_control=True),
}


def _builder(backend: str) -> Builder:
    if backend not in BUILDERS:
        raise ValueError(f"backend must be one of {tuple(BUILDERS)}, not {backend!r}")
    return BUILDERS[backend]


def backend_modules(backend: str, precision: str) -> tuple[str, ...]:
    """The optional modules (all in the ``export`` extra) a variant on ``backend`` needs."""
    builder = _builder(backend)
    return builder.modules + (builder.int8_modules if precision == "int8" else ())


def check_out(out: str | Path, backend: str) -> Path:
    """``out`` for a ``backend`` variant (``.pt`` / ``.onnx`` / ``.xml`` and an IR's ``.bin`` and
    ``.json``) can be written: ValueError naming it otherwise, before any work."""
    return BACKENDS[backend].check_output(out, f"{backend} variant")


def svd_spectra(model: nn.Module) -> dict[str, Spectrum]:
    return {name: spectrum(conv) for name, conv in fc_convs(model).items()}


def transform(model: nn.Module, *, fold_bn: bool = True, svd: dict[str, int] | None = None,
              spectra: dict[str, Spectrum] | None = None, subpixel: bool = False) -> tuple[nn.Module, dict]:
    """A transformed copy of ``model`` and the recipe describing it (the input is untouched);
    ``subpixel``: large transposed-conv upsamplings become conv + depth-to-space (same sums)."""
    m = copy.deepcopy(model).eval()
    recipe: dict = {}
    if fold_bn and count_batchnorms(m):
        m, n = fold_batchnorm(m, inplace=True)
        recipe["fold_bn"] = True
        recipe["folded"] = n
    if svd:
        apply_svd(m, svd, spectra)
        recipe["svd"] = {k: int(v) for k, v in svd.items()}
    if subpixel:
        recipe["subpixel"] = subpixel_upsampling(m)
    return m, recipe


def build_variant(model: nn.Module, *, backend: str, precision: str, workdir: str | Path,
                  calibration: list[Tensor] | None = None, svd: dict[str, int] | None = None,
                  spectra: dict[str, Spectrum] | None = None, fold_bn: bool = True, compile: bool = False,
                  threads: int | None = None, static: bool = True,
                  accuracy_control: tuple[list[LabelledImage], float] | None = None,
                  onnx_cache: dict | None = None, output: str = "logits", subpixel: bool = False) -> Variant:
    """Transform ``model`` and convert it for ``backend`` at ``precision``, staged in ``workdir``.

    ``output="labels"`` (exported backends): the file gives classes, the argmax inside the graph.

    ``accuracy_control=(samples, max_drop)`` (OpenVINO int8) lets NNCF keep the layers that
    cost most mean IU on ``samples`` in float until the drop is within ``max_drop`` points.
    ``onnx_cache`` (a dict kept by the caller) reuses the verified fp32 ONNX export of an
    identical transform instead of exporting again (minutes for full-width VGG-16).
    """
    builder = _builder(backend)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision in builder.refuses:
        raise ValueError(builder.refuses[precision])
    if accuracy_control and not (builder.accuracy_control and precision == "int8"):
        raise ValueError("accuracy-controlled quantisation is NNCF's: use --backend openvino --precision int8")
    if precision == "int8" and not calibration:
        raise ValueError("int8 needs calibration images (--calib DATA)")
    if output == "labels" and not builder.labels:
        raise ValueError(f"--output labels puts the argmax in an exported graph; the {backend} backend runs the "
                         f"model itself (use onnxruntime or openvino)")
    output_names(spec_of(model).heads, output)  # a known kind
    require("export", *backend_modules(backend, precision))
    m, recipe = transform(model, fold_bn=fold_bn, svd=svd, spectra=spectra, subpixel=subpixel)
    recipe.update(backend=backend, precision=precision)
    if output != "logits":
        recipe["output"] = output
    variant = Variant(_variant_name(backend, precision, recipe), backend, precision, recipe, m)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    builder.build(variant, workdir, calibration=calibration, compile=bool(compile), threads=threads, static=static,
                  accuracy_control=accuracy_control, onnx_cache=onnx_cache)
    return variant


def _variant_name(backend: str, precision: str, recipe: dict) -> str:
    name = f"{backend}-{precision}"
    if recipe.get("svd"):
        ranks = sorted(set(recipe["svd"].values()))
        name += "-svd" + "_".join(str(r) for r in ranks)
    if recipe.get("subpixel"):
        name += "-subpixel"
    if recipe.get("output") == "labels":
        name += "-labels"
    return name


def to_classes(runtime: Callable[[Tensor], Mapping[str, Tensor]]) -> Callable[[Tensor], Tensor]:
    """``runtime`` up to the (N, H, W) class map, as predict and serve use it: so a file with
    the argmax inside and one giving class scores are timed for the same result."""
    return lambda x: pixel_classes(runtime(x))


def measure(variant: Variant, samples: list[LabelledImage], reference: Reference, *, warmup: int = 2,
            repeats: int = 5, flops: float | None = None, timed: bool = True) -> BenchRow:
    """Accuracy on every sample against ``reference``, then latency on the first sample
    (``timed=False``: none yet, to be set with ``with_timing`` when paths are timed side by side);
    timed to the class map (``to_classes``)."""
    preds = predict_all(variant.runtime, samples)
    miu = mean_iu(preds, samples, reference.num_classes)
    timing = (time_callable(to_classes(variant.runtime), samples[0].image, warmup=warmup, repeats=repeats) if timed
              else Timing(math.nan, math.nan, 1))
    return BenchRow(variant.name, variant.backend, variant.precision, timing.median_ms, timing.p90_ms,
                    timing.images_per_s, gflop=None if flops is None else flops / 1e9,
                    size_mb=variant.size_bytes / 2**20, mean_iu=miu, mean_iu_change=miu - reference.mean_iu,
                    agreement=agreement(preds, reference.preds))


def with_timing(row: BenchRow, timing: Timing) -> BenchRow:
    return dataclasses.replace(row, median_ms=timing.median_ms, p90_ms=timing.p90_ms,
                               images_per_s=timing.images_per_s)


def check_budget(row: BenchRow, max_drop: float) -> None:
    if row.mean_iu_change is not None and -row.mean_iu_change > max_drop:
        raise BudgetExceeded(f"refused {row.name}: mean IU {row.mean_iu:.2f} is {-row.mean_iu_change:.2f} points "
                             f"below the fp32 model's {row.mean_iu - row.mean_iu_change:.2f} "
                             f"(--max-drop {max_drop:g}); nothing written")


def write_variant(variant: Variant, out: str | Path, results: dict) -> Path:
    """Move the accepted variant to ``out`` with its measured results in its metadata."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    BUILDERS[variant.backend].write(variant, out, {**variant.recipe, "results": results})
    return out


def default_output(checkpoint: str | Path, variant: Variant, folder: str | Path) -> Path:
    """``<folder>/<model stem>.<variant><suffix>``: ``folder`` is a fresh ``runs/optimize/N``,
    never the model's own folder (which may be read-only, or the package's weights)."""
    return Path(folder) / f"{Path(checkpoint).stem}.{variant.name}{BACKENDS[variant.backend].suffix}"


def choose_svd_rank(model: nn.Module, samples: list[LabelledImage], reference: Reference, budget: float, *,
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


def load_segmenter(checkpoint: str | Path, advice: str = "") -> nn.Module:
    """The model at ``checkpoint``, refused unless it only segments: variants are judged by
    mean IU alone, which says nothing of box outputs."""
    model = load_model(checkpoint)
    spec = spec_of(model)
    if spec.heads != {SEG}:
        raise ValueError(f"{checkpoint}: a {spec.task} model; optimize judges variants by mean IU, which only "
                         f"segmentation models have. {advice}".strip())
    return model


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
             max_drop: float = 1.0, accuracy_control: bool = False, fold_bn: bool = True, subpixel: bool = False,
             compile: bool = False, threads: int | None = None, warmup: int = 2, repeats: int = 10,
             out: str | Path | None = None, output: str = "logits", say: Callable[[str], None] = print) -> Optimized:
    """``fcnkit optimize`` as one call: build the variant (fold BN, SVD of fc6/fc7 at
    ``svd_rank`` -- ranks "r" / "r6,r7" / "auto" -- or ``svd_energy``, then the backend at
    ``precision``, int8 calibrated on ``calib``), measure it against the fp32 model on
    ``val``, and write it (default: under a new ``runs/optimize/N``) only if it loses at most
    ``max_drop`` mean IU points. Raises ``BudgetExceeded`` (nothing written) otherwise.
    ``output="labels"``: the file gives classes (the argmax inside the graph); ``subpixel``: the
    large upsampling as conv + depth-to-space (``fcnkit.models.subpixel``)."""
    if precision == "int8" and not calib:
        raise ValueError("int8 needs calibration data (calib: real images to calibrate activation ranges)")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, not {limit}")
    # before minutes of work: the extras the backend needs, and a place the result can go
    require("export", *backend_modules(backend, precision))
    if out is not None:
        check_out(out, backend)
    out_dir = check_output_dir(Path(out).resolve().parent if out else next_run_dir("optimize"))
    if threads:
        torch.set_num_threads(threads)
    model = load_segmenter(checkpoint, "Export it with fcnkit export (ONNX / OpenVINO, parity checked on every "
                                       "output)")
    prep = spec_of(model).preprocessing
    say(f"loading {val} ({val_split}) ...")
    samples = load_samples(val, val_split, prep, limit=limit)
    calibration = None
    if precision == "int8":
        calibration = [s.image for s in load_samples(calib, calib_split, prep, limit=calib_limit)]
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
                                accuracy_control=(samples, budget) if accuracy_control else None, output=output,
                                subpixel=subpixel)
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


__all__ = ["BUILDERS", "Builder", "BudgetExceeded", "Optimized", "PRECISIONS", "Reference", "Variant",
           "backend_modules", "build_variant", "check_budget", "check_out", "choose_svd_rank", "default_output",
           "load_segmenter", "measure", "optimize", "ranks_for_energy", "staging_dir", "svd_spectra", "transform",
           "write_variant"]
