"""``Predictor``: masks for images of any size, from any backend, whole or tiled, with TTA.

    from fcnkit.inference import Predictor
    pred = Predictor("camvid_fcn8s.pt", max_memory="2G", tta=True)
    result = pred.predict("street.jpg")
    result.mask            # (H, W) uint8 class indices, exactly the input's size
    result.overlay().save("street_overlay.jpg")
    for r in pred.predict_many(paths, batch_size=4, num_workers=2): ...

Whole-image inference is used while the estimated working memory fits the budget;
above it the image is cut into overlapping tiles whose blended logits are reduced
block by block as soon as they are final (``tiling``), so memory is governed by the
tile size. Every backend (``backend``) is a runner from normalised NCHW to the model's
outputs (``spec.outputs``), so torch models, checkpoints and exported files share all of this;
what the model predicts and for how many classes is its ``spec``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..detection.decode import DEFAULT_CONF, decode
from ..heads import BOXES, LABELS_OUTPUT, SEG, SEG_OUTPUT
from ..models.spec import ModelSpec
from ..nn import class_map
from ..progress import progress_bar
from .runtime import Runtime, TorchRuntime, open_model
from .context import GlobalPoolContext
from .images import ImageReadError, read_rgb_array, to_rgb_array
from .memory import HeapGuard
from .postprocess import colorize, draw_detections, overlay, palette_for
from .tiling import (TilePlan, choose_plan, count_tiles, fitted_tiles, grid_align, grid_cells, make_plan,
                     parse_memory, tiled_scores)
from .tta import Augmented, tta_views

DEFAULT_MAX_MEMORY = 2 * 2**30  # working-memory budget when none is given: 2 GiB
ProbsFactory = Callable[[Path | None, tuple[int, int, int]], np.ndarray]
TILE_PROGRESS_MIN = 64  # show a per-tile progress bar for images with at least this many tiles


@dataclass
class Prediction:
    """One image's result. ``mask`` is (H, W) class indices (uint8, or int64 beyond 256
    classes), exactly the input's size; ``probabilities`` (C, H, W) float16 if asked for;
    ``detections`` a list of ``{"box": [x0, y0, x1, y1], "label", "score"}`` for
    detection models; ``plan`` the tiling used (``None``: whole image)."""

    image: np.ndarray = field(repr=False)  # (H, W, 3) uint8, kept for the overlay
    mask: np.ndarray | None
    palette: list[tuple[int, int, int]] = field(repr=False)
    classes: list[str] | None = None
    probabilities: np.ndarray | None = field(default=None, repr=False)
    detections: list[dict] | None = None
    path: Path | None = None
    plan: TilePlan | None = None
    box_classes: list[str] | None = None  # names of detection labels (a joint model's differ from ``classes``)

    def colorized(self) -> Image.Image:
        """The mask as a palette ("P") image: saved as PNG it is the label map and a picture."""
        if self.mask is None:
            raise ValueError("this model has no segmentation output")
        return colorize(self.mask, self.palette)

    def class_shares(self) -> list[float]:
        """Each class's share of the image's pixels, in class order."""
        if self.mask is None:
            raise ValueError("this model has no segmentation output")
        counts = np.bincount(self.mask.ravel().astype(np.int64), minlength=len(self.palette))
        return [round(float(c) / self.mask.size, 6) for c in counts]

    def overlay(self, alpha: float = 0.5) -> Image.Image:
        """Class colours blended over the input, detection boxes drawn on top."""
        img = overlay(self.image, self.mask, self.palette, alpha=alpha)
        if self.detections:
            draw_detections(img, self.detections, self.box_classes)
        return img


@dataclass(frozen=True)
class Failure:
    """An input that could not be predicted, and why (the CLI reports these and goes on)."""

    path: Path | str  # a file, or a live source's URL as given (a Path would fold its '//')
    reason: str


class Predictor:
    """Segment images of any size with a model, a checkpoint or an exported model.

    Args:
        model_or_path: ``nn.Module``, saved model / training checkpoint path, ``.onnx`` or
            OpenVINO ``.xml`` path, or any callable with a ``spec`` (``ModelSpec``) from
            normalised (N, 3, H, W) float32 to the spec's outputs as a dict.
        device: torch device (default: CUDA if available, else CPU).
        tile: ``None`` chooses whole-image or tiled inference from ``max_memory``; an int
            or (h, w) forces tiles of that size; ``0`` forces whole-image inference.
        overlap: tile overlap, a fraction of the tile (float < 1) or pixels (int); default
            a quarter of the tile but at least 256 pixels (``tiling.resolve_overlap``).
        max_memory: working-memory budget (bytes or "2G") beyond the image and outputs.
        tta: shorthand for ``flip=True`` and scales (0.75, 1, 1.25) unless ``scales`` given.
        scales, flip: test-time augmentation views; probabilities are averaged.
        amp: precision of torch models: ``"auto"`` (default) times fp32 and bf16 autocast on
            the first image's size and keeps the faster (``fcnkit.engine.probe``; cached
            per machine), ``"bf16"`` or ``"off"`` (fp32) fix it. Detectors stay fp32 unless
            asked (box sizes lose about a pixel in bf16); exported files run as stored.
        bf16: shorthand for ``amp="bf16"``.
        channels_last: NHWC memory format for torch models (default: measured with ``amp``).
        conf: detectors: keep boxes scoring at least this (default: the model file's
            recommended threshold, else ``DEFAULT_CONF``).
        progress: progress of ``predict_many`` and videos, and per-tile progress of large
            tiled images (a bar on a terminal, a plain line now and then elsewhere);
            ``False`` shows none.

    An nn.Module passed in is put in eval mode on ``device`` (and channels_last) in place.
    """

    def __init__(self, model_or_path: nn.Module | str | Path | Callable, *, device: str | torch.device | None = None,
                 tile: int | tuple[int, int] | None = None, overlap: float | int | None = None,
                 max_memory: int | str | None = None, tta: bool = False, scales: Sequence[float] = (1.0,),
                 flip: bool = False, amp: str = "auto", bf16: bool = False, channels_last: bool | None = None,
                 conf: float | None = None, progress: bool = True) -> None:
        amp = "bf16" if bf16 else amp
        if amp not in ("auto", "bf16", "off"):
            raise ValueError(f"amp must be auto, bf16 or off, not {amp!r}")
        self.backend: Runtime = open_model(model_or_path, device=device, precision="bf16" if amp == "bf16" else None,
                                           channels_last=channels_last)
        spec = self.spec
        # torch models run in the precision and layout measured fastest on the first input (unless a
        # `fcnkit optimize --backend torch` file fixed them); exported graphs run as stored
        self.amp, self.channels_last_given, self.run_choice = amp, channels_last, None
        self._choose_pending = (isinstance(self.backend, TorchRuntime)
                                and not self.backend.meta.get("optimization"))
        self.device = self.backend.device
        self.progress = progress
        self.scales, self.flip = tta_views(tta, scales, flip)
        if conf is not None and not 0 <= conf <= 1:
            raise ValueError(f"conf must be a centre probability in [0, 1], not {conf}")
        self.overlap = overlap
        self.budget = parse_memory(max_memory) if max_memory is not None else DEFAULT_MAX_MEMORY
        self.forced_plan: TilePlan | None = None
        self.force_whole = tile == 0
        # tile corners on a grid that every (rescaled) view shares with the whole image
        self.align = grid_align(spec.pad_multiple, self.scales)
        if tile not in (None, 0):
            th, tw = (tile, tile) if isinstance(tile, int) else tile
            align = self.align if min(th, tw) >= 2 * self.align else spec.pad_multiple
            self.forced_plan = make_plan(tile, overlap, align)
        if BOXES in spec.heads and self.forced_plan is not None:
            raise ValueError("detection models run on whole images (their boxes are not blended across tiles): "
                             "drop tile")
        averages_scores = self.scales != (1.0,) or (self.flip and SEG in spec.heads)  # box maps take the flip alone
        if self.forced_plan is not None or averages_scores:  # tiles are blended and views averaged as class scores
            self.backend.require_scores("tiles and TTA need")
        meta = self.backend.meta
        self.max_size = int(meta["max_size"]) if meta.get("max_size") else None  # detectors: the trained scale
        # boxes kept: scores >= conf (given, else the one the model file recommends, else DEFAULT_CONF)
        self.conf = conf if conf is not None else float(meta.get("conf", DEFAULT_CONF))
        self.palette = palette_for(meta, max(spec.num_classes or 0, len(spec.label_names), 1))
        self.mask_dtype = np.uint8 if (spec.num_classes or 0) <= 256 else np.int64
        module = self.backend.module
        self.context = GlobalPoolContext(module) if module is not None else None
        # the names results carry: the pixel classes (a detector's: its box classes), and the box labels'
        self.classes: list[str] | None = list(spec.label_names) or None
        self.box_classes: list[str] | None = list(spec.box_classes) or None
        # what a forward pass runs: the runner, or its TTA views averaged (box maps: the flip only)
        self.run = Augmented(self.backend, scales=self.scales, flip=self.flip) if self.tta else self.backend

    @property
    def spec(self) -> ModelSpec:
        """What the model predicts (heads, class counts and names, preprocessing): its runner's."""
        return self.backend.spec

    @property
    def tta(self) -> bool:
        return self.flip or self.scales != (1.0,)

    @property
    def gives_labels(self) -> bool:
        """The model is an export with the argmax inside: it gives classes, not class scores."""
        return self.backend.output_kind == "labels"

    @property
    def meta(self) -> dict:
        return self.backend.meta

    def warm_up(self) -> None:
        """One forward pass on a tiny blank input (not the timed precision probe): a model that
        cannot run fails here, when a server starts, instead of at its first request."""
        m = self.spec.pad_multiple
        self.backend(torch.zeros(1, 3, m, m, device=self.device))

    def plan_for(self, height: int, width: int) -> TilePlan | None:
        """The tiling for an image of this size (``None``: whole image in one pass)."""
        if self.force_whole or BOXES in self.spec.heads:
            return None
        if self.gives_labels:  # classes cannot be blended over overlapping tiles: whole images, whatever the
            return None  # memory budget (documented: a huge image needs a logits export to be tiled)
        if self.forced_plan is not None:
            plan = self.forced_plan
            return None if plan.tile[0] >= height and plan.tile[1] >= width else plan
        return choose_plan(height, width, bytes_per_pixel=self._cost_per_pixel(), num_classes=self.spec.num_classes,
                           budget=self.budget, multiple=self.align, overlap=self.overlap)

    def _cost_per_pixel(self) -> float:
        """Estimated bytes per input pixel of one ``_outputs`` pass of a segmentation model:
        network (at the largest TTA scale) plus logits and softmax (and the TTA average)."""
        views = len(self.scales) * (2 if self.flip else 1)
        return self.backend.bytes_per_pixel() * max(self.scales) ** 2 + 4 * self.spec.num_classes * (2 + (views > 1))

    def _record_context(self, array: np.ndarray, plan: TilePlan, guard: Callable[[], None]) -> None:
        """Record the global pools' outputs for the whole image: from one whole-image pass
        if that fits the budget, else averaged (by area) over a grid of non-overlapping tiles."""
        h, w = array.shape[:2]
        image = torch.from_numpy(array).permute(2, 0, 1)  # (3, H, W) view
        if self._cost_per_pixel() * h * w <= self.budget:
            with self.context.recording():
                self._outputs(image[None].to(self.device))
            guard()
            return
        records, areas = [], []
        th, tw = fitted_tiles(h, w, plan)
        for y0, y1 in grid_cells(h, th, plan.align):  # cells no larger than the tiles of the main pass
            for x0, x1 in grid_cells(w, tw, plan.align):
                tile = image[None, :, y0:y1, x0:x1].to(self.device)  # (1, 3, h, w)
                with self.context.recording():
                    self._outputs(tile)
                records.append(self.context.record)
                areas.append((y1 - y0) * (x1 - x0))
                guard()
        self.context.record = [sum(a / sum(areas) * r[k] for a, r in zip(areas, records))
                               for k in range(len(records[0]))]

    # --- the forward pass ----------------------------------------------------------------
    def _outputs(self, x: Tensor) -> dict[str, Tensor]:
        """(N, 3, h, w) uint8 on the device -> the model's outputs (``spec.outputs``); with TTA
        ``"seg"`` holds the views' averaged log-probabilities (box maps: ``tta.flip_averaged``)."""
        return self.run(self.spec.preprocessing(x.float().div_(255.0)))

    def _seg_logits(self, x: Tensor) -> Tensor:
        """(N, 3, h, w) uint8 -> (N, C, h, w) logits: what tiles are blended from."""
        return self._outputs(x)[SEG_OUTPUT]

    # --- single images ---------------------------------------------------------------------
    def predict(self, image: str | Path | Image.Image | np.ndarray | Tensor, *, probabilities: bool = False,
                probs_out: np.ndarray | None = None) -> Prediction:
        """Predict one image (path, PIL image, (H, W, 3) array or (3, H, W) uint8 tensor).

        ``probs_out`` may be a preallocated (C, H, W) float16 array (e.g. a
        ``numpy.lib.format.open_memmap``) to receive the probabilities of a huge image.
        """
        path = Path(image) if isinstance(image, (str, Path)) else None
        array = read_rgb_array(path) if path is not None else to_rgb_array(image)
        return self._predict_array(array, path, probabilities or probs_out is not None, probs_out)

    @contextlib.contextmanager
    def _progress_as(self, progress: bool) -> Iterator[None]:
        """The call's word on progress wins for everything it prints (tile bars, the probe's line)."""
        kept, self.progress = self.progress, progress
        try:
            yield
        finally:
            self.progress = kept

    def _choose_run_once(self, shape: tuple[int, ...]) -> None:
        """On the first forward pass: the precision and layout a timed probe finds fastest at
        this input shape (before any global-pool context is recorded or replayed)."""
        if not self._choose_pending:
            return
        self._choose_pending = False
        amp = "off" if BOXES in self.spec.heads and self.amp == "auto" else self.amp
        say = (lambda m: print(m, file=sys.stderr)) if self.progress else None
        self.run_choice = self.backend.choose_run(shape, amp=amp, channels_last=self.channels_last_given, say=say)

    def _predict_array(self, array: np.ndarray, path: Path | None, probabilities: bool,
                       probs_out: np.ndarray | None = None) -> Prediction:
        h, w = array.shape[:2]
        plan = self.plan_for(h, w)
        if plan is None:
            return self._predict_whole([array], [path], probabilities, [probs_out])[0]
        self._choose_run_once((1, 3, *fitted_tiles(h, w, plan)))
        guard = HeapGuard(self.budget // 2)  # keeps freed tiles' heap from piling up (``memory``)
        mask = np.empty((h, w), dtype=self.mask_dtype)
        probs = self._probs_buffer(h, w, probs_out) if probabilities else None

        def emit(r0: int, r1: int, c0: int, c1: int, logits: Tensor) -> None:  # logits (C, r1 - r0, c1 - c0)
            mask[r0:r1, c0:c1] = class_map(logits, 0).cpu().numpy()
            if probs is not None:
                probs[:, r0:r1, c0:c1] = logits.softmax(0).half().cpu().numpy()
            guard()  # the tile's activations are freed by now

        replay = contextlib.nullcontext()
        if self.context:  # global pools (SE blocks) get the whole image's statistics, not the tile's
            self._record_context(array, plan, guard)
            replay = self.context.replaying()
        image = torch.from_numpy(array).permute(2, 0, 1)  # (3, H, W) view, no copy
        n_tiles = count_tiles(h, w, plan)
        with replay, progress_bar(total=n_tiles, unit="tile", leave=False, desc=path.name if path else "tiles",
                                  enabled=self.progress and n_tiles >= TILE_PROGRESS_MIN) as bar:
            tiled_scores(self._seg_logits, image, plan, emit, device=self.device, progress=bar.update)
        return self.prediction(array, mask, probabilities=probs, path=path, plan=plan)

    def _probs_buffer(self, h: int, w: int, out: np.ndarray | None) -> np.ndarray:
        shape = (self.spec.num_classes, h, w)
        if out is None:
            return np.empty(shape, dtype=np.float16)
        if tuple(out.shape) != shape:
            raise ValueError(f"probs_out has shape {tuple(out.shape)}, expected {shape}")
        return out

    def _predict_whole(self, arrays: list[np.ndarray], paths: list[Path | None], probabilities: bool,
                       probs_outs: list[np.ndarray | None] | None = None,
                       conf: float | None = None) -> list[Prediction]:
        """Same-size images in one forward pass."""
        if probabilities:
            self.backend.require_scores("probabilities need")
        h, w = arrays[0].shape[:2]
        x = torch.from_numpy(np.stack(arrays)).to(self.device).permute(0, 3, 1, 2)  # (N, 3, H, W) uint8
        spec = self.spec
        fit = BOXES in spec.heads and self.max_size and max(h, w) > self.max_size
        if fit:  # boxes were learnt at this scale: run there, map the results back to the image
            scale = self.max_size / max(h, w)
            small = (max(1, round(h * scale)), max(1, round(w * scale)))
            x = F.interpolate(x.float(), size=small, mode="bilinear", antialias=True,
                              align_corners=False).round().clamp(0, 255).to(torch.uint8)  # (N, 3, h', w')
        self._choose_run_once(tuple(x.shape))  # at the size the model runs at
        out = self._outputs(x)
        detections: list[list[dict] | None] = [None] * len(arrays)
        if BOXES in spec.heads:
            found_at = x.shape[-2:]
            detections = decode_detections(out, tuple(found_at), spec.output_stride,
                                           conf=self.conf if conf is None else conf)
            if fit:
                sy, sx = h / found_at[0], w / found_at[1]
                for dets in detections:
                    for d in dets:
                        x0, y0, x1, y1 = d["box"]
                        d["box"] = [round(min(w, x0 * sx), 2), round(min(h, y0 * sy), 2), round(min(w, x1 * sx), 2),
                                    round(min(h, y1 * sy), 2)]
        logits = out[SEG_OUTPUT] if SEG in spec.heads and not self.gives_labels else None  # (N, C, h', w')
        if fit and logits is not None:
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)  # (N, C, H, W)
        labels = out[LABELS_OUTPUT] if self.gives_labels else None  # (N, h', w'): the argmax ran in the graph
        if fit and labels is not None:
            labels = F.interpolate(labels[:, None].float(), size=(h, w), mode="nearest-exact")[:, 0]  # (N, H, W)
        results = []
        for i, array in enumerate(arrays):
            mask = probs = None
            if labels is not None:
                mask = labels[i].cpu().numpy().astype(self.mask_dtype, copy=False)  # (H, W)
            if logits is not None:
                mask = class_map(logits[i], 0).cpu().numpy().astype(self.mask_dtype, copy=False)  # (H, W)
                if probabilities:
                    probs = self._probs_buffer(h, w, (probs_outs or [None] * len(arrays))[i])
                    probs[...] = logits[i].softmax(0).half().cpu().numpy()  # (C, H, W)
            results.append(self.prediction(array, mask, probabilities=probs, detections=detections[i],
                                           path=paths[i]))
        return results

    def prediction(self, image: np.ndarray, mask: np.ndarray | None, *, probabilities: np.ndarray | None = None,
                   detections: list[dict] | None = None, path: Path | None = None,
                   plan: TilePlan | None = None) -> Prediction:
        """A ``Prediction`` of this model, with its palette and class names."""
        return Prediction(image=image, mask=mask, palette=self.palette, classes=self.classes,
                          box_classes=self.box_classes, probabilities=probabilities, detections=detections,
                          path=path, plan=plan)

    def predict_batch(self, images: Sequence[np.ndarray | Image.Image | Tensor], *,
                      probabilities: bool | ProbsFactory = False,
                      paths: Sequence[Path | None] | None = None, conf: float | None = None) -> list[Prediction]:
        """Predict several in-memory images; runs of same-size, untiled images share a forward
        pass (as many as fit in the memory budget). ``conf``: detectors keep boxes scoring at
        least this (default: the predictor's ``conf``).

        ``probabilities`` may be a function ``(path, (C, H, W)) -> float16 array`` that
        provides each image's probability buffer, e.g. a ``numpy.lib.format.open_memmap``
        so that huge probability maps go straight to disk.
        """
        arrays = [to_rgb_array(im) for im in images]
        paths = list(paths) if paths is not None else [None] * len(arrays)
        factory = probabilities if callable(probabilities) else None
        want = bool(probabilities)

        def buffers(k0: int, k1: int) -> list[np.ndarray | None]:
            return [factory(paths[k], (self.spec.num_classes, *arrays[k].shape[:2]))
                    if factory and SEG in self.spec.heads else None for k in range(k0, k1)]

        results: list[Prediction] = []
        i = 0
        while i < len(arrays):
            size = arrays[i].shape[:2]
            if self.plan_for(*size) is not None:
                results.append(self._predict_array(arrays[i], paths[i], want, buffers(i, i + 1)[0]))
                i += 1
                continue
            # as many same-size images per pass as the memory budget allows (at least one)
            limit = max(1, int(self.budget // (self.backend.bytes_per_pixel() * size[0] * size[1])))
            j = i + 1
            while j < len(arrays) and arrays[j].shape[:2] == size and j - i < limit:
                j += 1
            results.extend(self._predict_whole(arrays[i:j], paths[i:j], want, buffers(i, j), conf))
            i = j
        return results

    # --- many files ----------------------------------------------------------------------
    def predict_many(self, inputs: Iterable[str | Path], *, batch_size: int = 1, num_workers: int = 0,
                     probabilities: bool | ProbsFactory = False,
                     progress: bool | None = None) -> Iterator[Prediction | Failure]:
        """Yield a ``Prediction`` or a ``Failure`` per input path, in order.

        Files are decoded by ``num_workers`` DataLoader worker processes while the model
        runs; unreadable files become ``Failure`` (file and reason) and the rest go on.
        ``probabilities`` as for ``predict_batch``; ``progress`` (default: the predictor's)
        shows a bar on a terminal, a line now and then elsewhere.
        """
        paths = [Path(p) for p in inputs]
        progress = self.progress if progress is None else progress
        loader = DataLoader(_ImageFiles(paths), batch_size=max(1, batch_size), num_workers=num_workers,
                            collate_fn=_as_list)
        with self._progress_as(progress), \
                progress_bar(total=len(paths), unit="img", enabled=progress, desc="predict") as bar:
            for batch in loader:
                good = [(Path(p), img.numpy()) for p, img, err in batch if err is None]
                done = iter(self.predict_batch([a for _, a in good], probabilities=probabilities,
                                               paths=[p for p, _ in good]))
                for p, _, err in batch:
                    bar.update(1)
                    yield Failure(Path(p), err) if err is not None else next(done)


class _ImageFiles(Dataset):
    """Decodes in DataLoader workers; a read error becomes data, so one bad file stops nothing."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[str, Tensor | None, str | None]:
        try:
            return str(self.paths[i]), torch.from_numpy(read_rgb_array(self.paths[i])), None  # (H, W, 3) uint8
        except ImageReadError as e:
            return str(self.paths[i]), None, str(e).removeprefix(f"{self.paths[i]}: ")


def _as_list(batch: list) -> list:
    return batch  # images differ in size: no stacking here


def decode_detections(maps: dict[str, Tensor], size: tuple[int, int], stride: int, *,
                      conf: float = DEFAULT_CONF) -> list[list[dict]]:
    """Detection maps (``heatmap``, ``size``, ``offset``) -> per-image JSON-ready boxes
    ``{"box": [x0, y0, x1, y1], "label": int, "score": float}`` scoring at least ``conf``,
    by the detection module's decoder (peaks, top-k, threshold, class-wise NMS at
    ``DEFAULT_NMS_IOU``; boxes clipped to the image)."""
    n = maps["heatmap"].shape[0]
    results = decode(maps, stride=stride, image_sizes=[size] * n,
                     threshold=conf)
    return [[{"box": [round(float(v), 2) for v in box], "label": int(label), "score": round(float(score), 4)}
             for box, label, score in zip(r["boxes"].tolist(), r["labels"].tolist(), r["scores"].tolist())]
            for r in results]
