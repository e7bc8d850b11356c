"""KITTI object ``label_2`` files: parsing, class selection, splits and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fcnkit.data import DataError, build_dataset, detect_format
from fcnkit.data.kitti_object import KittiObjectDetection, parse_kitti_label
from fcnkit.heads import BOXES

# three real-format lines (000008.txt of the KITTI training set, abridged) plus a DontCare
LINES = [
    "Car 0.88 3 -0.69 0.00 192.37 402.31 374.00 1.60 1.57 3.23 -2.70 1.74 3.68 -1.29",
    "Pedestrian 0.00 0 -2.10 1000.50 150.25 1050.75 240.00 1.72 0.50 0.80 6.50 1.60 15.30 -1.70",
    "Van 0.00 1 1.85 387.63 181.54 423.81 203.12 1.67 1.87 3.69 -16.53 2.39 58.49 1.57",
    "DontCare -1 -1 -10 800.38 163.67 825.45 184.07 -1 -1 -1 -1000 -1000 -1000 -10",
]


def _write_kitti(root: Path, n: int = 5, lines: list[str] = LINES) -> None:
    (root / "training" / "image_2").mkdir(parents=True)
    (root / "training" / "label_2").mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((375, 1242, 3), i, np.uint8)).save(root / "training" / "image_2" / f"{i:06d}.png")
        (root / "training" / "label_2" / f"{i:06d}.txt").write_text("\n".join(lines[: 1 + i % len(lines)]) + "\n")


def test_parse_kitti_label_fields(tmp_path: Path) -> None:
    path = tmp_path / "000008.txt"
    path.write_text("\n".join(LINES) + "\n\n")
    objs = parse_kitti_label(path)
    assert [o.type for o in objs] == ["Car", "Pedestrian", "Van", "DontCare"]
    car = objs[0]
    assert car.truncated == 0.88 and car.occluded == 3 and car.alpha == -0.69
    assert car.box == (0.0, 192.37, 402.31, 374.0)
    assert car.dimensions == (1.6, 1.57, 3.23) and car.location == (-2.7, 1.74, 3.68) and car.rotation_y == -1.29
    assert car.score is None
    path.write_text(LINES[0] + " 0.93\n")  # result files carry a 16th field, the score
    assert parse_kitti_label(path)[0].score == 0.93


@pytest.mark.parametrize("line, message", [
    ("Car 0.0 0 0.0 1 2 3", "expected 15 fields"),
    ("Boat " + " ".join(["0"] * 14), "unknown object type 'Boat'"),
    ("Car 0.0 0 x 1 2 3 4 1 1 1 0 0 0 0", "non-numeric"),
])
def test_parse_kitti_label_errors_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "000001.txt"
    path.write_text(LINES[0] + "\n" + line + "\n")
    with pytest.raises(DataError, match=rf"000001\.txt:2: {message}"):
        parse_kitti_label(path)


def test_kitti_dataset_samples_classes_and_splits(tmp_path: Path) -> None:
    _write_kitti(tmp_path)
    assert detect_format(tmp_path) == "kitti_object"
    ds = KittiObjectDetection(tmp_path, "all")
    assert len(ds) == 5 and ds.classes == ["Car", "Pedestrian", "Cyclist"] and ds.heads == {BOXES}
    image, target = ds[3]  # all four lines: Car, Pedestrian kept; Van (not a class) and DontCare dropped
    assert image.shape == (3, 375, 1242) and image.dtype == torch.uint8
    torch.testing.assert_close(target["boxes"].as_subclass(torch.Tensor),
                               torch.tensor([[0.0, 192.37, 402.31, 374.0], [1000.5, 150.25, 1050.75, 240.0]]))
    assert target["labels"].tolist() == [0, 1]
    assert tuple(target["boxes"].canvas_size) == (375, 1242)
    cars_vans = KittiObjectDetection(tmp_path, "all", classes=["Van", "Car"])
    assert cars_vans[3][1]["labels"].tolist() == [1, 0]
    assert cars_vans[0][1]["labels"].tolist() == [1] and len(ds[0][1]["boxes"]) == 1
    train, val = KittiObjectDetection(tmp_path, "train"), KittiObjectDetection(tmp_path, "val")
    assert len(train) == 4 and len(val) == 1 and not {f for f, _ in train.files} & {f for f, _ in val.files}
    assert len(build_dataset(f"kitti_object:{tmp_path}", "val")) == 1


def test_kitti_dataset_rejects_bad_classes_and_layout(tmp_path: Path) -> None:
    _write_kitti(tmp_path, n=1)
    with pytest.raises(ValueError, match="not KITTI object types"):
        KittiObjectDetection(tmp_path, "all", classes=["Car", "Truk"])
    with pytest.raises(FileNotFoundError, match="label_2"):
        KittiObjectDetection(tmp_path / "nowhere", "all")
    (tmp_path / "training" / "label_2" / "000000.txt").write_text(
        "Car 0.0 0 0.0 50 60 40 70 1 1 1 0 0 0 0\n")  # right < left
    with pytest.raises(DataError, match="000000.txt: 1 degenerate box"):
        KittiObjectDetection(tmp_path, "all")[0]
