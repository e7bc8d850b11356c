"""Detection formats: PASCAL VOC XML and COCO JSON, plus the seeded split helper."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import data_dir
from test_data_fixtures import rng_image, save_png, voc_xml, write_voc_xml

from fcnkit.data import DataError, build_dataset, detect_format, pad_collate, train_transforms
from fcnkit.data.coco import COCODetection
from fcnkit.data.splits import split_items
from fcnkit.data.voc_xml import VOCDetection
from fcnkit.preprocessing import IMAGENET


# ---------------------------------------------------------------- splits

def test_split_items_is_deterministic_disjoint_and_order_free() -> None:
    items = [f"f{i:03d}" for i in range(50)]
    train = split_items(items, "train", val_fraction=0.2, seed=3)
    val = split_items(list(reversed(items)), "val", val_fraction=0.2, seed=3)
    assert len(val) == 10 and len(train) == 40 and sorted(train + val) == items
    assert val == split_items(items, "val", val_fraction=0.2, seed=3)  # input order does not matter
    assert val != split_items(items, "val", val_fraction=0.2, seed=4)
    assert split_items(items, "all") == items
    with pytest.raises(ValueError, match="split"):
        split_items(items, "test")


# ---------------------------------------------------------------- VOC XML

def test_voc_xml_raccoon_layout_boxes_and_classes(tmp_path: Path) -> None:
    written = write_voc_xml(tmp_path, n=5)
    ds = VOCDetection(tmp_path, "all")
    assert detect_format(tmp_path) == "voc_xml"
    assert len(ds) == 5 and ds.classes == ["cat", "dog"] and ds.heads == {"boxes"}
    image, target = ds[2]
    assert image.shape == (3, 20, 30) and image.dtype == torch.uint8
    # VOC 1-based inclusive (1+k, 2+k, 10+2k, 12+k) -> continuous XYXY (k, 1+k, 10+2k, 12+k)
    assert target["boxes"].tolist() == [[0, 1, 10, 12], [1, 2, 12, 13], [2, 3, 14, 14]]
    assert target["labels"].tolist() == [1, 0, 1]  # dog, cat, dog
    assert tuple(target["boxes"].canvas_size) == (20, 30)
    assert sum(len(ds[i][1]["boxes"]) for i in range(5)) == sum(len(o) for o in written)
    tr, va = VOCDetection(tmp_path, "train"), VOCDetection(tmp_path, "val")
    assert len(tr) == 4 and len(va) == 1 and not {f for f, _ in tr.files} & {f for f, _ in va.files}
    assert tr.classes == va.classes == ["cat", "dog"]


def test_voc_xml_voc_layout_uses_imagesets(tmp_path: Path) -> None:
    write_voc_xml(tmp_path, n=5, voc_layout=True)
    train, val = VOCDetection(tmp_path, "train"), VOCDetection(tmp_path, "val")
    assert [f.stem for f, _ in val.files] == ["img-3", "img-4"] and len(train) == 3


def test_voc_xml_errors_name_the_file(tmp_path: Path) -> None:
    write_voc_xml(tmp_path, n=3)
    (tmp_path / "annotations" / "img-0.xml").write_text(voc_xml("img-0.png", (20, 30), [("dog", (5, 5, 4, 9))]))
    (tmp_path / "annotations" / "img-1.xml").write_text(voc_xml("img-1.png", (20, 30), [("dog", (5, 5, 40, 9))]))
    (tmp_path / "annotations" / "img-2.xml").write_text(voc_xml("img-2.png", (21, 30), [("dog", (5, 5, 9, 9))]))
    ds = VOCDetection(tmp_path, "all")
    with pytest.raises(DataError, match="img-0.xml.*degenerate"):
        ds[0]
    with pytest.raises(DataError, match="img-1.xml.*outside the 30x20"):
        ds[1]
    with pytest.raises(DataError, match="img-2.xml.*declares image size 30x21"):
        ds[2]
    (tmp_path / "annotations" / "img-2.xml").write_text("<annotation><object>")
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = VOCDetection(tmp_path, "all")
    assert len(ds) == 2 and "img-2.xml: malformed XML" in ds.problems[0]


def test_voc_xml_missing_image_is_reported(tmp_path: Path) -> None:
    write_voc_xml(tmp_path, n=3)
    (tmp_path / "images" / "img-1.png").unlink()
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = VOCDetection(tmp_path, "all")
    assert len(ds) == 2 and "img-1" in ds.problems[0]


def test_real_raccoon_counts() -> None:
    root = data_dir("raccoon")
    ds = build_dataset(root, "all")
    assert isinstance(ds, VOCDetection) and len(ds) == 160 and ds.classes == ["raccoon"]
    assert sum(len(ds.load_target(i)[0]) for i in range(len(ds))) == 173
    train, val = build_dataset(f"voc_xml:{root}", "train"), build_dataset(f"voc_xml:{root}", "val")
    assert (len(train), len(val)) == (128, 32)
    image, target = ds[0]
    assert image.shape == (3, 417, 650) and ds.files[0][0].name == "raccoon-1.jpg"
    assert target["boxes"].tolist() == [[80, 87, 522, 408]]  # <xmin>81 <ymin>88 <xmax>522 <ymax>408
    grey = [i for i, (f, _) in enumerate(ds.files) if f.name in {"raccoon-150.jpg", "raccoon-152.jpg", "raccoon-161.jpg"}]
    assert len(grey) == 3
    for i in grey:  # the set's three grayscale JPEGs come out RGB, channels equal
        image = ds[i][0]
        assert image.shape[0] == 3 and torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])


def test_detection_transforms_and_collate(tmp_path: Path) -> None:
    write_voc_xml(tmp_path, n=4)
    ds = VOCDetection(tmp_path, "all", train_transforms(IMAGENET, crop_size=16, scale_range=(0.8, 1.5)))
    images, targets = pad_collate([ds[i] for i in range(4)])
    assert images.shape == (4, 3, 16, 16) and len(targets["boxes"]) == 4
    for b, lab in zip(targets["boxes"], targets["labels"]):
        assert len(b) == len(lab) and (b >= 0).all() and (b <= 16).all()


# ---------------------------------------------------------------- COCO

def _write_coco(root: Path, layout: str) -> dict:
    rng = np.random.default_rng(0)
    images = [{"id": 10 + i, "file_name": f"{i:04d}.png", "height": 20, "width": 30} for i in range(4)]
    anns = [
        {"id": 1, "image_id": 10, "category_id": 7, "bbox": [2, 3, 10, 5], "area": 50, "iscrowd": 0,
         "segmentation": [[2, 3, 12, 3, 12, 8, 2, 8]]},
        {"id": 2, "image_id": 10, "category_id": 3, "bbox": [0, 0, 4, 4], "area": 16, "iscrowd": 0,
         "segmentation": [[0, 0, 4, 0, 4, 4, 0, 4]]},
        {"id": 3, "image_id": 11, "category_id": 3, "bbox": [20, 10, 5, 5], "area": 25, "iscrowd": 1,
         "segmentation": {"size": [20, 30], "counts": [20 * 20 + 10, 5, 15, 5, 15, 5, 15, 5, 15, 5, 20 * 5 + 5]}},
        {"id": 4, "image_id": 12, "category_id": 7, "bbox": [1.5, 2.5, 3, 4], "area": 12, "iscrowd": 0},
    ]
    data = {"images": images, "annotations": anns,
            "categories": [{"id": 7, "name": "car"}, {"id": 3, "name": "person"}]}
    if layout == "coco":
        ann_path, image_dir = root / "annotations" / "instances_train2017.json", root / "train2017"
    else:
        ann_path, image_dir = root / "annotations.json", root / "images"
    ann_path.parent.mkdir(parents=True, exist_ok=True)
    ann_path.write_text(json.dumps(data))
    for im in images:
        save_png(image_dir / im["file_name"], rng_image(rng, 20, 30))
    return data


def test_coco_boxes_labels_and_layouts(tmp_path: Path) -> None:
    _write_coco(tmp_path, "coco")
    assert detect_format(tmp_path) == "coco"
    ds = COCODetection(tmp_path, "train")
    assert len(ds) == 4 and ds.classes == ["person", "car"]  # category id order 3, 7
    _, t = ds[0]
    assert t["boxes"].tolist() == [[2, 3, 12, 8], [0, 0, 4, 4]] and t["labels"].tolist() == [1, 0]
    assert ds[1][1]["boxes"].shape == (0, 4)  # crowd only: no boxes
    assert ds[2][1]["boxes"].tolist() == [[1.5, 2.5, 4.5, 6.5]]


def test_coco_single_file_split_and_masks(tmp_path: Path) -> None:
    _write_coco(tmp_path, "single")
    ds = build_dataset(f"coco:{tmp_path}", "all")
    assert len(ds) == 4
    assert len(COCODetection(tmp_path, "train")) + len(COCODetection(tmp_path, "val")) == 4
    ds = build_dataset(f"coco_joint:{tmp_path}", "all")  # COCODetection(..., masks=True): both kinds of label
    assert ds.heads == {"seg", "boxes"} and ds.classes == ["background", "person", "car"] and ds.box_classes == ["person", "car"]
    assert ds.palette[0] == (0, 0, 0) and len(ds.palette) == 3
    image, t = ds[0]
    mask = t["mask"]
    assert mask.shape == (20, 30) and t["labels"].tolist() == [1, 0]  # box label k is mask class k + 1
    # the small person square is painted over the larger car rectangle
    assert (mask[0:4, 0:4] == 1).all() and (mask[4:8, 4:12] == 2).all() and (mask[9:, :] == 0).all()
    crowd = ds[1][1]["mask"]
    assert (crowd == 255).sum() == 25 and (crowd[10:15, 20:25] == 255).all()
    from fcnkit.data.check import check_dataset

    report = check_dataset(f"coco_joint:{tmp_path}", splits=["all"], progress=False)
    assert report.heads == {"seg", "boxes"} and report.box_histogram == {0: 1, 1: 2}  # crowd is no box
    assert report.histogram[255] == 25 and sum(report.histogram.values()) == 4 * 20 * 30
    text = report.format_text()
    assert "class pixels:" in text and text.split("class boxes:")[1].split("\n")[1].split() == ["0", "person", "1",
                                                                                               "33.33%"]


def test_coco_bad_json_named(tmp_path: Path) -> None:
    (tmp_path / "annotations.json").write_text("{not json")
    with pytest.raises(DataError, match="annotations.json: not a COCO"):
        COCODetection(tmp_path, "all")
