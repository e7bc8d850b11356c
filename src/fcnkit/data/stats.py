"""Class frequencies and median-frequency-balancing weights (Eigen & Fergus 2015, as
SegNet used for CamVid).

``freq_c = pixels of class c / total pixels of the images in which c is present`` and
``w_c = median(freq) / freq_c``: rare classes get weights > 1, frequent ones < 1.
Ignored pixels count towards an image's total (they are part of the image) but are
not a class. A class present in no image gets weight 0 and is left out of the median.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..io import atomic_write_text
from ..progress import progress_bar


def class_statistics(dataset, *, progress: bool = True) -> dict:
    """Pixel counts, frequencies and median-frequency weights of a segmentation dataset
    (read through ``load_raw``, i.e. before any transform, where the dataset has it; samples
    without a mask, such as a mixture's box-only photos, are skipped)."""
    n = len(dataset.classes)
    pixels = np.zeros(n, dtype=np.int64)  # pixels of class c
    image_pixels = np.zeros(n, dtype=np.int64)  # total pixels of images containing c
    ignored = 0
    read = getattr(dataset, "load_raw", dataset.__getitem__)
    for i in progress_bar(range(len(dataset)), desc="stats", unit="img", enabled=progress, leave=False):
        target = read(i)[1]
        if "mask" not in target:
            continue
        mask = target["mask"].numpy()
        counts = np.bincount(mask[mask != dataset.ignore_index].ravel(), minlength=n)[:n]
        ignored += int((mask == dataset.ignore_index).sum())
        pixels += counts
        image_pixels[counts > 0] += mask.size
    present = image_pixels > 0
    if not present.any():
        where = getattr(dataset, "root", dataset)
        raise ValueError(f"{where}: no labelled pixel in {len(dataset)} images (every pixel is the ignore index "
                         f"{dataset.ignore_index}); class weights cannot be computed, and would train nothing")
    freq = np.where(present, pixels / np.maximum(image_pixels, 1), 0.0)
    median = float(np.median(freq[present])) if present.any() else 0.0
    weights = np.where(present, median / np.where(freq > 0, freq, 1.0), 0.0)
    return {
        "classes": list(dataset.classes),
        "images": len(dataset),
        "pixels": pixels.tolist(),
        "ignored_pixels": ignored,
        "image_pixels": image_pixels.tolist(),
        "frequency": freq.tolist(),
        "median_frequency": median,
        "class_weights": weights.tolist(),
    }


def class_weights_of(dataset, *, cache_dir: str | Path | None = None, progress: bool = False) -> tuple[list[float], str]:
    """Median-frequency weights of ``dataset`` (what ``class_weights: auto`` trains with) and
    where they came from: counted now, or read from ``cache_dir`` where the same files (paths,
    sizes, modification times) and classes were counted before."""
    files = list(getattr(dataset, "files", []) or [])
    key = None
    if cache_dir is not None and files:
        listing = [(str(p), os.stat(p).st_size, os.stat(p).st_mtime_ns) for f in files for p in f if Path(p).is_file()]
        raw = json.dumps([list(dataset.classes), int(getattr(dataset, "ignore_index", 255)), listing])
        key = Path(cache_dir) / f"{hashlib.sha1(raw.encode()).hexdigest()}.json"
        try:
            return json.loads(key.read_text())["class_weights"], f"cached ({key})"
        except (OSError, ValueError, KeyError):
            pass
    stats = class_statistics(dataset, progress=progress)
    if key is not None:
        try:
            key.parent.mkdir(parents=True, exist_ok=True)
            write_json({"classes": stats["classes"], "class_weights": stats["class_weights"]}, key)
        except OSError:
            pass  # an unwritable cache only costs a recount next time
    return stats["class_weights"], f"counted over {len(dataset)} images"


def write_json(data: dict, path: str | Path) -> None:
    """Write JSON atomically (``fcnkit.io``: temp file, fsync, rename)."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
