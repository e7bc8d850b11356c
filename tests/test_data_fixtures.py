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


def write_coco(root: Path, splits: dict[str, int] | None = None, size: tuple[int, int] = (32, 40),
               seed: int = 0) -> None:
    """COCO layout (annotations/instances_{split}2017.json + {split}2017/): each image one or
    two rectangles, a "car" (id 7) and a "person" (id 3), as boxes and as polygons."""
    import json

    rng = np.random.default_rng(seed)
    h, w = size
    for split, n in (splits or {"train": 4, "val": 2}).items():
        images, anns = [], []
        for i in range(n):
            images.append({"id": i + 1, "file_name": f"{i:04d}.png", "height": h, "width": w})
            save_png(root / f"{split}2017" / f"{i:04d}.png", rng_image(rng, h, w))
            for k, cat in enumerate((7, 3)[: 1 + i % 2]):
                x, y, bw, bh = 2 + 14 * k, 3 + i % 4, 10 + 2 * k, 12 - k
                anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat, "bbox": [x, y, bw, bh],
                             "area": bw * bh, "iscrowd": 0,
                             "segmentation": [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]})
        path = root / "annotations" / f"instances_{split}2017.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"images": images, "annotations": anns,
                                    "categories": [{"id": 7, "name": "car"}, {"id": 3, "name": "person"}]}))


def write_folder(root: Path, n: int = 4, size: tuple[int, int] = (8, 10), *, colour: bool = False,
                 classes_file: str | None = "classes.yaml", seed: int = 0) -> list[np.ndarray]:
    """images/ + masks/; 3 classes; colour masks use palette [black, magenta, blue] and white = ignore."""
    rng = np.random.default_rng(seed)
    palette = np.array([(0, 0, 0), (255, 0, 255), (0, 0, 255), (255, 255, 255)], np.uint8)  # last = ignore
    written = []
    for i in range(n):
        label = rng.integers(0, 4, size=size).astype(np.uint8)
        save_png(root / "images" / f"s{i}.jpg" if i % 2 else root / "images" / f"s{i}.png", rng_image(rng, *size))
        if colour:
            save_png(root / "masks" / f"s{i}.png", palette[label])
        else:
            save_png(root / "masks" / f"s{i}.png", np.where(label == 3, 255, label).astype(np.uint8))
        written.append(np.where(label == 3, 255, label).astype(np.int64))
    if classes_file:
        text = ("classes: [background, road, car]\npalette: [[0, 0, 0], [255, 0, 255], [0, 0, 255]]\n"
                "ignore_colors: [[255, 255, 255]]\n")
        if classes_file.endswith(".json"):
            import json

            text = json.dumps({"classes": {"background": [0, 0, 0], "road": [255, 0, 255], "car": [0, 0, 255]},
                               "ignore_colors": [[255, 255, 255]]})
        (root / classes_file).write_text(text)
    return written


def write_voc_seg(root: Path, size: tuple[int, int] = (8, 10), seed: int = 0) -> dict[str, np.ndarray]:
    """VOCdevkit/VOC2012 with palette PNG masks (21 classes, 255 borders) and SBD cls/*.mat."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    voc = root / "VOCdevkit" / "VOC2012"
    written = {}
    vpal = [0] * 768
    for i, (r, g, b) in enumerate([(0, 0, 0), (128, 0, 0), (0, 128, 0)]):
        vpal[3 * i: 3 * i + 3] = [r, g, b]
    ids = [f"2007_{i:06d}" for i in range(4)]
    for k, name in enumerate(ids):
        label = rng.integers(0, 21, size=size).astype(np.uint8)
        label[0, :] = 255  # object border
        save_png(voc / "JPEGImages" / f"{name}.png", rng_image(rng, *size))
        (voc / "JPEGImages" / f"{name}.png").rename(voc / "JPEGImages" / f"{name}.jpg")
        img = Image.fromarray(label, mode="P")
        img.putpalette(vpal)
        (voc / "SegmentationClass").mkdir(parents=True, exist_ok=True)
        img.save(voc / "SegmentationClass" / f"{name}.png")
        written[name] = label.astype(np.int64)
        sbd = root / "benchmark_RELEASE" / "dataset"
        save_png(sbd / "img" / f"{name}.png", rng_image(rng, *size))
        (sbd / "img" / f"{name}.png").rename(sbd / "img" / f"{name}.jpg")
        (sbd / "cls").mkdir(parents=True, exist_ok=True)
        cls = rng.integers(0, 21, size=size).astype(np.uint8)
        savemat(sbd / "cls" / f"{name}.mat", {"GTcls": {"Segmentation": cls, "CategoriesPresent": np.unique(cls)}})
        written[f"sbd/{name}"] = cls.astype(np.int64)
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids[:3]) + "\n")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text(ids[3] + "\n")
    (root / "benchmark_RELEASE" / "dataset" / "train.txt").write_text("\n".join(ids[1:]) + "\n")
    (root / "benchmark_RELEASE" / "dataset" / "val.txt").write_text(ids[0] + "\n")
    return written


def write_cityscapes(root: Path, size: tuple[int, int] = (8, 16), seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    written = {}
    for split, city, n in (("train", "aachen", 2), ("train", "bochum", 1), ("val", "frankfurt", 1)):
        for i in range(n):
            stem = f"{city}_{i:06d}_000019"
            ids = rng.integers(0, 34, size=size).astype(np.uint8)
            save_png(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", rng_image(rng, *size))
            save_png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", ids)
            save_png(root / "gtFine" / split / city / f"{stem}_gtFine_color.png", rng_image(rng, *size))
            written[stem] = ids
    return written


def write_kitti_road(root: Path, size: tuple[int, int] = (6, 12), seed: int = 0) -> dict[str, np.ndarray]:
    """data_road/training/{image_2, gt_image_2}; GT colours magenta road, red not-road, black outside."""
    rng = np.random.default_rng(seed)
    base = root / "data_road" / "training"
    colours = np.array([(255, 0, 0), (255, 0, 255), (0, 0, 0)], np.uint8)
    written = {}
    for cat, n in (("um", 3), ("umm", 2), ("uu", 2)):
        for i in range(n):
            save_png(base / "image_2" / f"{cat}_{i:06d}.png", rng_image(rng, *size))
            kinds = ["road"] + (["lane"] if cat == "um" else [])
            for kind in kinds:
                code = rng.integers(0, 3, size=size)
                save_png(base / "gt_image_2" / f"{cat}_{kind}_{i:06d}.png", colours[code])
                written[f"{cat}_{kind}_{i:06d}"] = np.where(code == 2, 255, code).astype(np.int64)
    (root / "data_road" / "testing" / "image_2").mkdir(parents=True)
    return written
