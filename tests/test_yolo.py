"""YOLO-format detection data, read and written (issue 26.10)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fcnkit.data import build_dataset
from fcnkit.data.formats import detect_format
from fcnkit.data.image_io import DataError
from fcnkit.data.yolo import YOLODetection, parse_yolo_labels, yolo_lines


def _image(path, w=200, h=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path)


def _split_layout(root):
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames:\n  0: cat\n  1: dog\n")
    _image(root / "images" / "train" / "a.jpg")
    _image(root / "images" / "train" / "b.png")  # no label file: a background image
    _image(root / "images" / "val" / "c.jpg", w=50, h=40)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("1 0.5 0.5 0.2 0.4\n\n0 0.1 0.2 0.2 0.4 0.93\n")
    (root / "labels" / "val" / "c.txt").write_text("")


def test_reads_boxes_in_pixels_with_names_from_data_yaml(tmp_path) -> None:
    _split_layout(tmp_path)
    assert detect_format(tmp_path) == "yolo"
    train = build_dataset(f"yolo:{tmp_path}", "train")
    assert train.classes == ["cat", "dog"] and len(train) == 2 and train.heads == {"boxes"}
    image, target = train[0]  # a.jpg, 200x100
    assert image.shape == (3, 100, 200)
    assert torch.allclose(target["boxes"].as_subclass(torch.Tensor),
                          torch.tensor([[80.0, 30.0, 120.0, 70.0], [0.0, 0.0, 40.0, 40.0]]))
    assert target["labels"].tolist() == [1, 0]
    assert len(train[1][1]["labels"]) == 0  # b.png has no label file
    val = build_dataset(str(tmp_path), "val")  # auto-detected
    assert len(val) == 1 and len(val[0][1]["boxes"]) == 0


def test_flat_layout_is_split_by_seed_and_names_fall_back(tmp_path) -> None:
    for i in range(10):
        _image(tmp_path / "images" / f"{i}.jpg", 20, 10)
        (tmp_path / "labels").mkdir(exist_ok=True)
        (tmp_path / "labels" / f"{i}.txt").write_text(f"{i % 3} 0.5 0.5 0.5 0.5\n")
    train, val = YOLODetection(tmp_path, "train"), YOLODetection(tmp_path, "val")
    assert len(train) == 8 and len(val) == 2
    assert not {f[0] for f in train.files} & {f[0] for f in val.files}
    assert YOLODetection(tmp_path, "all").classes == ["0", "1", "2"]  # no names anywhere: the numbers
    (tmp_path / "classes.txt").write_text("a\nb\nc\n")
    assert YOLODetection(tmp_path, "all").classes == ["a", "b", "c"]


def test_bad_label_lines_name_the_file_and_line(tmp_path) -> None:
    f = tmp_path / "x.txt"
    for text, said in [("0 0.5 0.5 0.2\n", "expected 'class cx cy w h'"),
                       ("0 0.5 0.5 0.2 nan\n", "expected 'class cx cy w h'"),
                       ("1.5 0.5 0.5 0.2 0.2\n", "expected 'class cx cy w h'"),
                       ("\n3 0.5 0.5 0.2 0.2\n", "x.txt:2: class 3 but the dataset names 2 classes"),
                       ("0 0.9 0.5 0.4 0.2\n", "x.txt:1: box [0.9, 0.5, 0.4, 0.2] is not inside the image")]:
        f.write_text(text)
        with pytest.raises(DataError, match=said.replace("[", r"\[").replace("]", r"\]")):
            parse_yolo_labels(f, 2)
    _split_layout(tmp_path / "d")
    (tmp_path / "d" / "labels" / "train" / "a.txt").write_text("7 0.5 0.5 0.1 0.1\n")
    with pytest.warns(UserWarning, match="skipped 1"):  # the bad file is left out and reported
        ds = YOLODetection(tmp_path / "d", "train")
    assert len(ds) == 1 and "a.txt:1: class 7" in ds.problems[0]
    with pytest.raises(FileNotFoundError, match="no images/test/"):
        YOLODetection(tmp_path / "d", "test")


def test_written_lines_read_back_as_the_same_boxes(tmp_path) -> None:
    detections = [{"box": [10.0, 20.0, 70.0, 50.0], "label": 1, "score": 0.87},
                  {"box": [0.0, 0.0, 200.0, 100.0], "label": 0, "score": 0.31}]
    text = yolo_lines(detections, (100, 200))
    assert text.splitlines()[0] == "1 0.200000 0.350000 0.300000 0.300000 0.8700"
    _image(tmp_path / "images" / "p.jpg")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "p.txt").write_text(text)
    _, target = YOLODetection(tmp_path, "all", classes=["cat", "dog"])[0]
    assert torch.allclose(target["boxes"].as_subclass(torch.Tensor), torch.tensor([d["box"] for d in detections]),
                          atol=1e-3)


def test_predict_save_txt_writes_yolo_lines_for_a_detector(tmp_path) -> None:
    from fcnkit import create_model
    from fcnkit.cli import main
    from fcnkit.models.saved import save_model

    save_model(create_model("fcn8s_det", det_classes=2, width=1 / 16), tmp_path / "det.pt", classes=["cat", "dog"])
    _image(tmp_path / "in" / "p.jpg", 64, 48)
    assert main(["predict", str(tmp_path / "det.pt"), str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                 "--save-txt", "--conf", "0", "--quiet"]) == 0
    import json

    dets = json.loads((tmp_path / "out" / "p.detections.json").read_text())["detections"]
    lines = (tmp_path / "out" / "p.txt").read_text().splitlines()
    assert len(lines) == len(dets) > 0 and lines[0] == yolo_lines(dets[:1], (48, 64)).strip()
