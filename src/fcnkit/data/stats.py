"""Class frequencies and median-frequency-balancing weights (Eigen & Fergus 2015, as
SegNet used for CamVid).

``freq_c = pixels of class c / total pixels of the images in which c is present`` and
``w_c = median(freq) / freq_c``: rare classes get weights > 1, frequent ones < 1.
Ignored pixels count towards an image's total (they are part of the image) but are
not a class. A class present in no image gets weight 0 and is left out of the median.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..io import atomic_write_text
from ..progress import progress_bar


def class_statistics(dataset, *, progress: bool = True) -> dict:
    """Pixel counts, frequencies and median-frequency weights of a segmentation dataset
    (read through ``load_raw``, i.e. before any transform)."""
    n = len(dataset.classes)
    pixels = np.zeros(n, dtype=np.int64)  # pixels of class c
    image_pixels = np.zeros(n, dtype=np.int64)  # total pixels of images containing c
    ignored = 0
    for i in progress_bar(range(len(dataset)), desc="stats", unit="img", enabled=progress, leave=False):
        mask = dataset.load_raw(i)[1]["mask"].numpy()
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


def write_json(data: dict, path: str | Path) -> None:
    """Write JSON atomically (``fcnkit.io``: temp file, fsync, rename)."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
