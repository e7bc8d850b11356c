"""YOLO-format detection labels: what most people's detection data is in today.

Layouts (Ultralytics')::

    root/data.yaml                      names: [cat, dog]   (or {0: cat, 1: dog})
    root/images/{train,val}/*.jpg       root/labels/{train,val}/*.txt
    root/images/*.jpg                   root/labels/*.txt    (no split folders: train/val drawn
                                                              by fcnkit.data.splits, seeded)

One line per box, ``class cx cy w h``, centre and size as fractions of the image's width
and height (a sixth column, a score, as ``fcnkit predict --save-txt`` writes, is ignored).
An image without a label file, or with an empty one, has no objects. Class names come
from ``data.yaml`` / ``dataset.yaml`` (``names``), else ``classes.txt`` (one per line),
else the numbers found. ``yolo_lines`` writes the same format.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image

from .detection import DetectionDataset, check_boxes
from .image_io import DataError, unreadable_reason
from .splits import split_items

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
YAML_NAMES = ("data.yaml", "dataset.yaml")
SLACK = 1e-3  # normalised coordinates a labelling tool rounded just past the edge


def read_names(root: Path) -> list[str] | None:
    """Class names of a YOLO folder (``data.yaml``'s ``names`` or ``classes.txt``), or None."""
    for name in YAML_NAMES:
        path = root / name
        if path.is_file():
            import yaml

            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            except (yaml.YAMLError, UnicodeDecodeError) as e:
                raise DataError(f"{path}: not readable YAML ({type(e).__name__})") from None
            names = data.get("names") if isinstance(data, dict) else None
            if isinstance(names, dict):
                try:
                    keys = sorted(int(k) for k in names)
                except (TypeError, ValueError):
                    raise DataError(f"{path}: names must map class numbers to names") from None
                if keys != list(range(len(keys))):
                    raise DataError(f"{path}: names must number the classes 0..{len(keys) - 1}, not {keys}")
                return [str(names[k] if k in names else names[str(k)]) for k in keys]
            if isinstance(names, list) and names:
                return [str(n) for n in names]
            raise DataError(f"{path}: no 'names' list or mapping")
    path = root / "classes.txt"
    if path.is_file():
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return None


def parse_yolo_labels(path: Path, num_classes: int | None) -> tuple[list[int], list[list[float]]]:
    """(class numbers, [cx, cy, w, h] normalised) of one label file; DataError naming the file and line."""
    if not path.exists():
        return [], []
    reason = unreadable_reason(path)
    if reason is not None:
        raise DataError(f"{path}: {reason}")
    labels, boxes = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            cls, values = float(parts[0]), [float(v) for v in parts[1:5]]
        except ValueError:
            raise DataError(f"{path}:{n}: expected 'class cx cy w h' numbers, got {line.strip()!r}") from None
        if len(parts) < 5 or not cls.is_integer() or cls < 0 or not all(map(math.isfinite, values)):
            raise DataError(f"{path}:{n}: expected 'class cx cy w h' (a class number and four fractions), "
                            f"got {line.strip()!r}")
        if num_classes is not None and cls >= num_classes:
            raise DataError(f"{path}:{n}: class {int(cls)} but the dataset names {num_classes} classes")
        cx, cy, w, h = values
        if not (w > 0 and h > 0 and -SLACK <= cx - w / 2 and cx + w / 2 <= 1 + SLACK
                and -SLACK <= cy - h / 2 and cy + h / 2 <= 1 + SLACK):
            raise DataError(f"{path}:{n}: box {values} is not inside the image (coordinates are fractions "
                            f"of its width and height)")
        labels.append(int(cls))
        boxes.append(values)
    return labels, boxes


class YOLODetection(DetectionDataset):
    """YOLO-format boxes (``images/`` + ``labels/``); ``classes`` overrides the names found."""

    def __init__(self, root: str | Path, split: str = "train", transforms: Callable | None = None, *,
                 classes: Sequence[str] | None = None, val_fraction: float = 0.2, seed: int = 0) -> None:
        root = Path(root)
        if not (root / "images").is_dir():
            raise FileNotFoundError(f"{root}: no images/ folder (a YOLO dataset has images/ and labels/)")
        if (root / "images" / split).is_dir():
            image_dir, label_dir = root / "images" / split, root / "labels" / split
            images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        elif any((root / "images" / s).is_dir() for s in ("train", "val", "test")):
            found = [s for s in ("train", "val", "test") if (root / "images" / s).is_dir()]
            raise FileNotFoundError(f"{root}: no images/{split}/ (splits here: {', '.join(found)})")
        else:
            image_dir, label_dir = root / "images", root / "labels"
            images = split_items(sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS), split,
                                 val_fraction=val_fraction, seed=seed)
        names = list(classes) if classes is not None else read_names(root)
        files, problems, self._labels = [], [], []
        for image in images:
            label = label_dir / f"{image.stem}.txt"
            try:
                parsed = parse_yolo_labels(label, len(names) if names is not None else None)
            except DataError as e:
                problems.append(str(e))
                continue
            files.append((image, label))
            self._labels.append(parsed)
        if names is None:  # no names anywhere: the class numbers found in the split
            names = [str(k) for k in range(max((c for cs, _ in self._labels for c in cs), default=-1) + 1)]
        self.root, self.split = root, split
        super().__init__(files, names, transforms, problems)

    def load_target(self, index: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int] | None]:
        image_path, label_path = self.files[index]
        labels, boxes = self._labels[index]
        with Image.open(image_path) as im:  # the header alone: the size the fractions refer to
            w, h = im.size
        b = torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4)  # (K, 4) cx cy w h, fractions
        xyxy = torch.stack([(b[:, 0] - b[:, 2] / 2) * w, (b[:, 1] - b[:, 3] / 2) * h,
                            (b[:, 0] + b[:, 2] / 2) * w, (b[:, 1] + b[:, 3] / 2) * h], 1).float()
        return check_boxes(xyxy, label_path), torch.tensor(labels, dtype=torch.int64), None


def yolo_lines(detections: list[dict], size: tuple[int, int], *, scores: bool = True) -> str:
    """``label cx cy w h [score]`` lines (fractions of the (H, W) image) for ``fcnkit predict --save-txt``."""
    h, w = size
    out = []
    for d in detections:
        x0, y0, x1, y1 = d["box"]
        line = (f"{int(d['label'])} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} "
                f"{(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}")
        out.append(line + (f" {float(d['score']):.4f}" if scores else ""))
    return "".join(line + "\n" for line in out)


__all__ = ["YOLODetection", "parse_yolo_labels", "read_names", "yolo_lines"]
