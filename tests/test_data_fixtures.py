"""Tiny datasets written in each format's exact native layout (imported by test_data*.py).

Each writer returns the ground truth it wrote, so tests compare what a dataset reads
against what was put on disk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def rng_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def save_png(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path) if mode else Image.fromarray(array).save(path)


def write_camvid(root: Path, counts: dict[str, int] | None = None, size: tuple[int, int] = (12, 16), *,
                 list_files: bool = False, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """SegNet CamVid layout: split/ + splitannot/ (8-bit class PNGs, 11 = void)."""
    rng = np.random.default_rng(seed)
    counts = counts or {"train": 3, "val": 2}
    written: dict[str, list[np.ndarray]] = {}
    for split, n in counts.items():
        lines, written[split] = [], []
        for i in range(n):
            name = f"0001TP_{i:06d}.png"
            label = rng.integers(0, 12, size=size, dtype=np.uint8)  # 0..10 + void 11
            save_png(root / split / name, rng_image(rng, *size))
            save_png(root / f"{split}annot" / name, label)
            written[split].append(label)
            lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}")
        if list_files:
            (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return written
