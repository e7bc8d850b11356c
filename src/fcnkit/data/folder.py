"""A plain folder of images and masks matched by file stem.

::

    root/images/*.{png,jpg}   root/masks/*.png      (+ optional root/classes.yaml|json)
    root/{train,val}/images/  root/{train,val}/masks/   (split folders, if you have them)

Masks are either class-index PNGs (8/16-bit grayscale or palette; the value is the
class, 255 = ignore) or RGB colour PNGs mapped through the palette of the classes
file::

    classes: [background, road, car]          # or a mapping  {road: [255, 0, 255], ...}
    palette: [[0, 0, 0], [255, 0, 255], [0, 0, 255]]   # needed for colour masks
    ignore_colors: [[255, 255, 255]]          # optional: colours meaning "unlabelled"
    ignore_values: [11]                       # optional: label values meaning "unlabelled" (CamVid's void)

Without a classes file the classes are named ``class0..classN`` (N the largest label
found): ``fcnkit data check`` says so. See docs/data.md.

Without split folders, ``train``/``val`` come from the seeded ``split_items``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from .base import IGNORE_INDEX, SegmentationDataset, default_palette, pair_by_stem
from .image_io import DataError, colors_to_labels, read_color_map, read_label_map
from .splits import split_items

CLASS_FILES = ("classes.yaml", "classes.yml", "classes.json", "palette.yaml", "palette.yml", "palette.json")


def read_class_file(path: Path) -> tuple[list[str], list[tuple[int, int, int]] | None, list[tuple[int, int, int]],
                                         list[int]]:
    """(classes, palette or None, ignore colours, ignore label values) from a small JSON/YAML file."""
    try:
        data = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise DataError(f"{path}: cannot parse ({e})") from None
    if isinstance(data, list):
        data = {"classes": data}
    if not isinstance(data, dict) or "classes" not in data:
        raise DataError(f"{path}: expected a 'classes' list or mapping of name -> [r, g, b]")
    classes, palette = data["classes"], data.get("palette")
    if isinstance(classes, dict):
        classes, palette = list(classes), list(classes.values())
    words = [c for c in classes if isinstance(c, bool) or c is None] if isinstance(classes, list) else []
    if words:  # YAML 1.1 reads an unquoted yes/no/on/off/true/false/null as a boolean or null
        spelled = {True: "yes/on/true", False: "no/off/false", None: "null/~"}[words[0]]
        raise DataError(f"{path}: class name {words[0]!r} is not text (YAML reads an unquoted {spelled} so); "
                        f"quote the name")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes) or not classes:
        raise DataError(f"{path}: 'classes' must be a non-empty list of names")

    def colours(value, what: str) -> list[tuple[int, int, int]]:
        try:
            out = [tuple(int(v) for v in c) for c in value]
        except (TypeError, ValueError):
            raise DataError(f"{path}: {what} must be a list of [r, g, b]") from None
        if any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in out):
            raise DataError(f"{path}: {what} must be a list of [r, g, b] with values 0..255")
        return out

    if palette is not None:
        palette = colours(palette, "palette")
        if len(palette) != len(classes):
            raise DataError(f"{path}: {len(palette)} palette colours for {len(classes)} classes")
        if len(set(palette)) != len(palette):
            raise DataError(f"{path}: palette colours must be distinct")
    ignore_values = data.get("ignore_values", [])
    if not (isinstance(ignore_values, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                                     and 0 <= v < 65536 for v in ignore_values)):
        raise DataError(f"{path}: ignore_values must be a list of label values (whole numbers 0..65535)")
    return classes, palette, colours(data.get("ignore_colors", []), "ignore_colors"), ignore_values


class FolderSegmentation(SegmentationDataset):
    """``images/`` + ``masks/`` by stem; index or colour masks (see module docstring).

    ``classes`` / ``palette`` override the classes file; without either, the classes
    are ``class0..classN`` with N the largest label found in the masks."""

    def __init__(self, root: str | Path, split: str = "train", transforms: Callable | None = None, *,
                 classes: list[str] | None = None, palette: list[tuple[int, int, int]] | None = None,
                 val_fraction: float = 0.2, seed: int = 0) -> None:
        root = Path(root)
        base = root / split if (root / split / "images").is_dir() else root
        if not (base / "images").is_dir():
            raise FileNotFoundError(f"{root}: no images/ folder (or {split}/images/)")
        files, problems = pair_by_stem(base / "images", base / "masks", image_exts=(".png", ".jpg", ".jpeg", ".bmp",
                                                                                   ".tif", ".tiff"))
        if base == root:
            files = split_items(files, split, val_fraction=val_fraction, seed=seed)
        self.ignore_colors: list[tuple[int, int, int]] = []
        self.ignore_values: list[int] = []
        class_file = next((root / n for n in CLASS_FILES if (root / n).is_file()), None)
        self.class_file = class_file
        if classes is None and class_file is not None:
            classes, file_palette, self.ignore_colors, self.ignore_values = read_class_file(class_file)
            palette = palette or file_palette
        self.named = classes is not None  # else class0..classN (data check suggests a classes file)
        self._colour_palette = palette  # the palette colour masks are decoded with, if any
        if classes is None:
            classes = [f"class{i}" for i in range(self._largest_label(files) + 1)]
        self.classes = list(classes)
        self.palette = list(palette) if palette is not None else default_palette(len(self.classes))
        self.root, self.split = root, split
        super().__init__(files, transforms, problems)

    @staticmethod
    def _largest_label(files: list[tuple[Path, Path]]) -> int:
        largest = 0
        for _, mask in files:
            try:
                with Image.open(mask) as img:
                    if img.mode in ("L", "P", "I;16", "I"):
                        values = np.unique(np.asarray(img))
                        values = values[values != IGNORE_INDEX]
                        largest = max(largest, int(values.max()) if values.size else 0)
            except (OSError, ValueError, SyntaxError):  # unreadable: its sample's load reports it
                continue
        return largest

    def load_mask(self, path: Path) -> np.ndarray:
        with Image.open(path) as img:
            colour = img.mode in ("RGB", "RGBA")
        if not colour:
            labels = read_label_map(path)
            if self.ignore_values:
                labels[np.isin(labels, self.ignore_values)] = self.ignore_index
            return self.check_labels(labels, path)
        if self._colour_palette is None:
            raise DataError(f"{path}: colour mask but no palette; add 'palette' to a classes.yaml in {self.root}")
        return colors_to_labels(read_color_map(path), self._colour_palette, path=path,
                                ignore_colors=tuple(self.ignore_colors))
