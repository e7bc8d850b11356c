"""Segmentation formats beyond CamVid: folder, VOC 2012, SBD, Cityscapes, KITTI Road."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_data_fixtures import save_png, write_cityscapes, write_folder, write_kitti_road, write_voc_seg
from torchvision import tv_tensors

from fcnkit.data import DataError, build_dataset, detect_format
from fcnkit.data.cityscapes import Cityscapes
from fcnkit.data.folder import FolderSegmentation
from fcnkit.data.kitti_road import KittiRoad
from fcnkit.data.voc import SBDSegmentation, VOCSegmentation


def _masks(ds) -> list[np.ndarray]:
    return [ds[i][1]["mask"].numpy() for i in range(len(ds))]


# ---------------------------------------------------------------- folder

@pytest.mark.parametrize("colour,classes_file", [(False, "classes.yaml"), (True, "classes.yaml"),
                                                 (True, "palette.json"), (False, None)])
def test_folder_index_and_colour_masks(tmp_path: Path, colour: bool, classes_file: str | None) -> None:
    written = write_folder(tmp_path, n=5, colour=colour, classes_file=classes_file)
    assert detect_format(tmp_path) == "folder"
    ds = FolderSegmentation(tmp_path, "all")
    assert len(ds) == 5 and [f.stem for f, _ in ds.files] == ["s0", "s1", "s2", "s3", "s4"]
    if classes_file:
        assert ds.classes == ["background", "road", "car"] and ds.palette[1] == (255, 0, 255)
    else:  # classes inferred from the largest label in the masks
        assert ds.classes == ["class0", "class1", "class2"]
    for got, want in zip(_masks(ds), written):
        assert np.array_equal(got, want)
    train, val = FolderSegmentation(tmp_path, "train"), FolderSegmentation(tmp_path, "val")
    assert (len(train), len(val)) == (4, 1)


def test_folder_split_folders(tmp_path: Path) -> None:
    write_folder(tmp_path / "train", n=3, classes_file=None)
    write_folder(tmp_path / "val", n=2, classes_file=None, seed=1)
    (tmp_path / "classes.yaml").write_text("classes: [a, b, c]\n")
    assert detect_format(tmp_path) == "folder"
    assert len(build_dataset(tmp_path, "train")) == 3 and len(build_dataset(f"folder:{tmp_path}", "val")) == 2


def test_folder_errors_name_the_file(tmp_path: Path) -> None:
    write_folder(tmp_path, n=2, colour=True)
    rgb = np.zeros((8, 10, 3), np.uint8)
    rgb[2, 3] = (1, 2, 3)
    save_png(tmp_path / "masks" / "s0.png", rgb)
    ds = FolderSegmentation(tmp_path, "all")
    with pytest.raises(DataError, match=r"s0.png: 1 colour\(s\) not in the palette: \(1,2,3\)"):
        ds[0]
    (tmp_path / "classes.yaml").write_text("classes: [a, b]\npalette: [[0, 0, 0]]\n")
    with pytest.raises(DataError, match="classes.yaml: 1 palette colours for 2 classes"):
        FolderSegmentation(tmp_path, "all")
    (tmp_path / "classes.yaml").write_text("classes: [a, b]\n")
    with pytest.raises(DataError, match="s0.png: colour mask but no palette"):
        FolderSegmentation(tmp_path, "all")[0]
    (tmp_path / "classes.yaml").unlink()
    save_png(tmp_path / "masks" / "s1.png", np.full((8, 10), 7, np.uint8))
    (tmp_path / "classes.yaml").write_text("classes: [a, b, c]\n")
    with pytest.raises(DataError, match=r"s1.png: label values \[7\] are neither a class \(0..2\)"):
        FolderSegmentation(tmp_path, "all")[1]


# ---------------------------------------------------------------- VOC 2012 + SBD

def test_voc_segmentation_palette_pngs(tmp_path: Path) -> None:
    written = write_voc_seg(tmp_path)
    root = tmp_path / "VOCdevkit"
    assert detect_format(root) == "voc"
    train, val = VOCSegmentation(root, "train"), build_dataset(f"voc:{root}", "val")
    assert (len(train), len(val)) == (3, 1) and len(train.classes) == 21 and train.classes[15] == "person"
    assert train.palette[1] == (128, 0, 0) and train.palette[15] == (192, 128, 128)  # VOC colour map
    image, target = train[0]
    assert image.shape == (3, 8, 10)
    assert Image.open(train.files[0][1]).mode == "P"
    assert np.array_equal(target["mask"].numpy(), written["2007_000000"])
    assert (target["mask"][0] == 255).all()  # borders stay the ignore index


def test_sbd_cls_mat(tmp_path: Path) -> None:
    written = write_voc_seg(tmp_path)
    assert detect_format(tmp_path / "benchmark_RELEASE") == "sbd"
    ds = SBDSegmentation(tmp_path, "train")
    assert len(ds) == 3 and len(SBDSegmentation(tmp_path, "val")) == 1
    assert ds.files[0][1].suffix == ".mat"
    mask = ds[0][1]["mask"]
    assert mask.dtype == torch.int64 and np.array_equal(mask.numpy(), written["sbd/2007_000001"])
    (ds.files[1][1]).write_bytes(b"not a mat file")
    with pytest.raises(DataError, match="2007_000002.mat: not an SBD cls"):
        ds[1]


# ---------------------------------------------------------------- Cityscapes

def test_cityscapes_label_ids_to_train_ids(tmp_path: Path) -> None:
    written = write_cityscapes(tmp_path)
    assert detect_format(tmp_path) == "cityscapes"
    ds = Cityscapes(tmp_path, "train")
    assert len(ds) == 3 and len(Cityscapes(tmp_path, "val")) == 1 and len(ds.classes) == 19
    assert ds.classes[0] == "road" and ds.classes[18] == "bicycle"
    ids = written[ds.files[0][0].name.removesuffix("_leftImg8bit.png")]
    mask = ds[0][1]["mask"].numpy()
    # spot-check the table: 7 road -> 0, 26 car -> 13, 33 bicycle -> 18, 0/4/30 -> ignore
    for label_id, train_id in ((7, 0), (8, 1), (11, 2), (24, 11), (26, 13), (33, 18), (0, 255), (4, 255), (30, 255)):
        assert (mask[ids == label_id] == train_id).all()
    assert sorted(set(np.unique(mask).tolist()) - {255}) == sorted(set(range(19)) & set(np.unique(mask).tolist()))
    assert (mask != 255).sum() == np.isin(ids, [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31,
                                                32, 33]).sum()
    save_png(ds.files[1][1], np.full((8, 16), 40, np.uint8))
    with pytest.raises(DataError, match=r"labelIds.png: values \[40\] are not Cityscapes label ids"):
        ds[1]


# ---------------------------------------------------------------- KITTI Road

def test_kitti_road_colours(tmp_path: Path) -> None:
    written = write_kitti_road(tmp_path)
    assert detect_format(tmp_path) == "kitti_road"
    ds = KittiRoad(tmp_path, "all")
    assert len(ds) == 7 and ds.classes == ["not road", "road"]
    assert ds.categories == ["um", "um", "um", "umm", "umm", "uu", "uu"]
    for i in range(len(ds)):
        assert np.array_equal(ds[i][1]["mask"].numpy(), written[ds.files[i][1].stem])
    assert len(KittiRoad(tmp_path, "all", categories=("uu",))) == 2
    lane = KittiRoad(tmp_path, "all", gt="lane")
    assert len(lane) == 3 and all("_lane_" in a.name for _, a in lane.files)
    assert len(KittiRoad(tmp_path, "train")) + len(KittiRoad(tmp_path, "val")) == 7
    bad = np.zeros((6, 12, 3), np.uint8)
    bad[0, 0] = (0, 255, 0)
    save_png(ds.files[0][1], bad)
    with pytest.raises(DataError, match=r"um_road_000000.png: 1 colour\(s\) not in the palette: \(0,255,0\)"):
        ds[0]


def test_every_format_returns_the_sample_contract(tmp_path: Path) -> None:
    write_folder(tmp_path / "f")
    write_voc_seg(tmp_path / "v")
    write_cityscapes(tmp_path / "c")
    write_kitti_road(tmp_path / "k")
    for spec in (tmp_path / "f", tmp_path / "v" / "VOCdevkit", tmp_path / "v" / "benchmark_RELEASE",
                 tmp_path / "c", tmp_path / "k"):
        ds = build_dataset(spec, "train")
        image, target = ds[0]
        assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.shape[0] == 3
        assert isinstance(target["mask"], tv_tensors.Mask) and target["mask"].dtype == torch.int64
        assert target["mask"].shape == image.shape[-2:] and ds.ignore_index == 255
        assert len(ds.palette) == len(ds.classes) and all(len(c) == 3 for c in ds.palette)
        values = set(target["mask"].unique().tolist())
        assert values <= set(range(len(ds.classes))) | {255}


def _palette_png(path, array) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array.astype(np.uint8), mode="P")
    img.putpalette([v for i in range(256) for v in (i, i, i)])  # a full palette: PIL keeps every index
    img.save(path)


def test_voc_segmentation_objects_give_boxes_too(tmp_path) -> None:
    """SegmentationObject instance maps -> one box per object, labelled by its class (20 object classes)."""
    from test_data_fixtures import write_voc_seg

    from fcnkit.data import VOCSegmentation
    from fcnkit.data.mixed import has_boxes

    write_voc_seg(tmp_path, size=(12, 16))
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    assert not has_boxes(VOCSegmentation(voc, "train"))  # no SegmentationObject folder: masks only
    cls = np.zeros((12, 16), np.int64)
    inst = np.zeros((12, 16), np.int64)
    cls[2:5, 3:9], inst[2:5, 3:9] = 7, 1  # a car: rows 2-4, columns 3-8
    cls[6:11, 1:4], inst[6:11, 1:4] = 15, 2  # a person
    cls[6:11, 10:15], inst[6:11, 10:15] = 15, 3  # another person
    inst[4, 3] = 255  # a border pixel inside the car's box does not change it
    _palette_png(voc / "SegmentationClass" / "2007_000000.png", cls)
    _palette_png(voc / "SegmentationObject" / "2007_000000.png", inst)
    ds = VOCSegmentation(voc, "train")
    assert has_boxes(ds) and ds.box_classes[6] == "car" and ds.box_classes[14] == "person"
    _, target = ds[0]
    assert target["boxes"].tolist() == [[3, 2, 9, 5], [1, 6, 4, 11], [10, 6, 15, 11]]
    assert target["labels"].tolist() == [6, 14, 14] and target["mask"].shape == (12, 16)
    _, other = ds[1]  # no instance map for this image: a mask-only sample
    assert "boxes" not in other


def test_cityscapes_instance_ids_give_boxes_of_thing_classes(tmp_path) -> None:
    from PIL import Image
    from test_data_fixtures import write_cityscapes

    from fcnkit.data import Cityscapes

    write_cityscapes(tmp_path, size=(8, 16))
    gt = tmp_path / "gtFine" / "val" / "frankfurt"
    inst = np.full((8, 16), 7, np.uint16)  # road, no instance (Cityscapes writes 16-bit PNGs)
    inst[1:4, 2:6] = 26 * 1000 + 0  # car #0
    inst[4:8, 9:12] = 24 * 1000 + 3  # person #3
    inst[0, 12:16] = 26  # crowd of cars: a class id below 1000, no box
    Image.fromarray(inst).save(gt / "frankfurt_000000_000019_gtFine_instanceIds.png")
    ds = Cityscapes(tmp_path, "val")
    assert ds.box_classes == ["person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]
    _, target = ds[0]
    assert target["boxes"].tolist() == [[9, 4, 12, 8], [2, 1, 6, 4]]  # by instance id: 24003, 26000
    assert target["labels"].tolist() == [0, 2]


def test_folder_classes_file_ignore_values_and_the_check_note_for_unnamed_classes(tmp_path):
    """Issue 26.3: data check called classes class0..class11 and counted CamVid's void as a class,
    and classes.yaml was described only in the source."""
    import numpy as np
    from PIL import Image

    from fcnkit.data import build_dataset
    from fcnkit.data.check import check_dataset

    root = tmp_path / "mine"
    for d in ("images", "masks"):
        (root / d).mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(np.array([[0, 1, 11] * 2] * 4, np.uint8)).save(root / "masks" / f"{i}.png")
    report = check_dataset(f"folder:{root}", progress=False)
    text = report.format_text()
    assert len(report.classes) == 12 and "class0..class11" in text and "ignore_values" in text
    (root / "classes.yaml").write_text("classes: [sky, road]\nignore_values: [11]\n")
    ds = build_dataset(f"folder:{root}", "all")
    assert ds.classes == ["sky", "road"] and ds[0][1]["mask"].unique().tolist() == [0, 1, 255]
    report = check_dataset(f"folder:{root}", progress=False)
    assert report.ok and "note:" not in report.format_text()
