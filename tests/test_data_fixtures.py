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


def voc_xml(filename: str, size: tuple[int, int], objects: list[tuple[str, tuple[int, int, int, int]]]) -> str:
    """A PASCAL VOC annotation; boxes given as VOC 1-based inclusive (xmin, ymin, xmax, ymax)."""
    h, w = size
    objs = "".join(
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for name, (x1, y1, x2, y2) in objects)
    return (f"<annotation><folder>images</folder><filename>{filename}</filename><size><width>{w}</width>"
            f"<height>{h}</height><depth>3</depth></size><segmented>0</segmented>{objs}</annotation>")


def write_voc_xml(root: Path, n: int = 5, size: tuple[int, int] = (20, 30), *, voc_layout: bool = False,
                  seed: int = 0) -> list[list[tuple[str, tuple[int, int, int, int]]]]:
    """raccoon layout (images/ + annotations/) or VOC layout (JPEGImages/ + Annotations/ + ImageSets/Main)."""
    rng = np.random.default_rng(seed)
    image_dir, annot_dir = (root / "JPEGImages", root / "Annotations") if voc_layout else (root / "images", root / "annotations")
    annot_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(n):
        name = f"img-{i}"
        objects = [("cat" if k % 2 else "dog", (1 + k, 2 + k, 10 + 2 * k, 12 + k)) for k in range(1 + i % 3)]
        save_png(image_dir / f"{name}.png", rng_image(rng, *size))
        (annot_dir / f"{name}.xml").write_text(voc_xml(f"{name}.png", size, objects))
        written.append(objects)
    if voc_layout:
        (root / "ImageSets" / "Main").mkdir(parents=True)
        (root / "ImageSets" / "Main" / "train.txt").write_text("".join(f"img-{i}\n" for i in range(n - 2)))
        (root / "ImageSets" / "Main" / "val.txt").write_text("".join(f"img-{i}\n" for i in range(n - 2, n)))
    return written
