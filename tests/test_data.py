"""Sample contract, CamVid, transforms presets, pad_collate and build_dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import data_dir
from PIL import Image
from test_data_fixtures import save_png, write_camvid
from torchvision import tv_tensors

from fcnkit.data import (CamVid, DataError, build_dataset, detect_format, eval_transforms, pad_collate,
                         parse_spec, train_transforms)
from fcnkit.preprocessing import CAFFE_VGG, IMAGENET, Preprocessing

IDENTITY = Preprocessing("RGB", 1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


# ---------------------------------------------------------------- CamVid (fixture)

@pytest.mark.parametrize("list_files", [False, True])
def test_camvid_reads_exact_pixels_and_maps_void(tmp_path: Path, list_files: bool) -> None:
    written = write_camvid(tmp_path, {"train": 3, "val": 2}, list_files=list_files)
    ds = CamVid(tmp_path, "train")
    assert len(ds) == 3 and len(CamVid(tmp_path, "val")) == 2
    assert ds.classes[0] == "Sky" and ds.classes[10] == "Bicyclist" and len(ds.palette) == 11
    assert ds.ignore_index == 255
    image, target = ds[1]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.shape == (3, 12, 16)
    on_disk = np.array(Image.open(ds.files[1][0]))
    assert torch.equal(image.permute(1, 2, 0), torch.from_numpy(on_disk))
    mask = target["mask"]
    assert isinstance(mask, tv_tensors.Mask) and mask.dtype == torch.int64 and mask.shape == (12, 16)
    expected = written["train"][1].astype(np.int64)
    expected[expected == 11] = 255
    assert torch.equal(mask, torch.from_numpy(expected))
    assert (written["train"][1] == 11).any()  # the fixture really had void pixels


def test_camvid_rejects_out_of_range_label_naming_file(tmp_path: Path) -> None:
    write_camvid(tmp_path, {"train": 2})
    bad = tmp_path / "trainannot" / "0001TP_000001.png"
    label = np.zeros((12, 16), np.uint8)
    label[0, 0] = 12
    save_png(bad, label)
    ds = CamVid(tmp_path, "train")
    ds[0]  # the good one reads
    with pytest.raises(DataError, match=r"0001TP_000001\.png.*\[12\]"):
        ds[1]


def test_camvid_rgb_annotation_and_size_mismatch_are_errors(tmp_path: Path) -> None:
    write_camvid(tmp_path, {"train": 2})
    save_png(tmp_path / "trainannot" / "0001TP_000000.png", np.zeros((12, 16, 3), np.uint8))
    save_png(tmp_path / "trainannot" / "0001TP_000001.png", np.zeros((10, 16), np.uint8))
    ds = CamVid(tmp_path, "train")
    with pytest.raises(DataError, match="0001TP_000000.png.*single-channel"):
        ds[0]
    with pytest.raises(DataError, match="0001TP_000001.png.*16x10"):
        ds[1]


def test_camvid_missing_pair_is_skipped_and_reported(tmp_path: Path) -> None:
    write_camvid(tmp_path, {"train": 3})
    (tmp_path / "trainannot" / "0001TP_000002.png").unlink()
    with pytest.warns(UserWarning, match="skipped 1 unpaired"):
        ds = CamVid(tmp_path, "train")
    assert len(ds) == 2 and "0001TP_000002.png" in ds.problems[0]


def test_camvid_bad_split_and_missing_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        CamVid(tmp_path, "trainval")
    with pytest.raises(FileNotFoundError):
        CamVid(tmp_path / "nope", "train")


# ---------------------------------------------------------------- CamVid (real)

def test_real_camvid_counts_labels_and_void() -> None:
    root = data_dir("camvid")
    train, val = CamVid(root, "train"), CamVid(root, "val")
    assert (len(train), len(val)) == (367, 101)
    image, target = train[0]
    assert image.shape == (3, 360, 480) and image.dtype == torch.uint8
    raw = np.asarray(Image.open(train.files[0][1]))
    assert raw.max() <= 11 and (raw == 11).any()
    mask = target["mask"]
    assert torch.equal(mask == 255, torch.from_numpy(raw == 11))
    assert set(mask.unique().tolist()) <= set(range(11)) | {255}
    assert val.files[0][0].parent.name == "val" and val.files[0][1].parent.name == "valannot"


# ---------------------------------------------------------------- transforms

def _sample(h: int = 20, w: int = 30) -> tuple[tv_tensors.Image, dict]:
    image = torch.zeros(3, h, w, dtype=torch.uint8)
    mask = torch.zeros(h, w, dtype=torch.int64)
    image[:, 5:10, 8:20] = 200
    mask[5:10, 8:20] = 3
    boxes = tv_tensors.BoundingBoxes([[8, 5, 20, 10], [0, 0, 2, 2]], format="XYXY", canvas_size=(h, w))
    return tv_tensors.Image(image), {"mask": tv_tensors.Mask(mask), "boxes": boxes,
                                     "labels": torch.tensor([3, 1])}


def test_eval_transforms_only_convert_and_normalise() -> None:
    image, target = _sample()
    out_image, out_target = eval_transforms(IMAGENET)(image, target)
    assert out_image.dtype == torch.float32 and out_image.shape == image.shape
    expected = (image.float() / 255 - torch.tensor(IMAGENET.mean).view(3, 1, 1)) / torch.tensor(IMAGENET.std).view(3, 1, 1)
    torch.testing.assert_close(out_image.as_subclass(torch.Tensor), expected)
    assert torch.equal(out_target["mask"], target["mask"]) and out_target["mask"].dtype == torch.int64
    assert torch.equal(out_target["boxes"], target["boxes"])


def test_caffe_preprocessing_gives_bgr_0_255_minus_mean() -> None:
    image = tv_tensors.Image(torch.tensor([10, 20, 30], dtype=torch.uint8).view(3, 1, 1))
    out, _ = eval_transforms(CAFFE_VGG)(image, {"mask": tv_tensors.Mask(torch.zeros(1, 1, dtype=torch.int64))})
    torch.testing.assert_close(out.flatten(), torch.tensor([30 - 104.00698793, 20 - 116.66876762, 10 - 122.67891434]))


def test_crop_pads_mask_with_ignore_and_image_with_zero() -> None:
    image, target = _sample(10, 12)
    del target["boxes"], target["labels"]
    t = train_transforms(IDENTITY, crop_size=(30, 40), scale_range=None, hflip=False, color_jitter=None)
    out_image, out_target = t(image, target)
    assert out_image.shape == (3, 30, 40) and out_target["mask"].shape == (30, 40)
    padded = out_target["mask"] == 255
    assert padded.sum() == 30 * 40 - 10 * 12  # exactly the padding is ignored
    assert (out_image[:, padded] == 0).all()


def test_scale_uses_nearest_for_masks_and_scales_boxes() -> None:
    image, target = _sample(20, 30)
    t = train_transforms(IDENTITY, scale_range=(2.0, 2.0), hflip=False, color_jitter=None)
    out_image, out_target = t(image, target)
    assert out_image.shape == (3, 40, 60)
    assert set(out_target["mask"].unique().tolist()) == {0, 3}  # no interpolated labels
    assert torch.equal(out_target["boxes"], torch.tensor([[16, 10, 40, 20], [0, 0, 4, 4]]))
    assert (out_target["mask"][10:20, 16:40] == 3).all() and out_target["mask"].sum() == 3 * 10 * 24


def test_boxes_leaving_the_crop_are_dropped_with_labels() -> None:
    image, target = _sample(20, 30)
    torch.manual_seed(0)
    t = train_transforms(IDENTITY, crop_size=(10, 10), scale_range=None, hflip=False, color_jitter=None)
    for _ in range(20):
        _, out = t(image, target)
        assert len(out["boxes"]) == len(out["labels"])
        b = out["boxes"]
        assert ((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])).all()  # no degenerate boxes
        assert (b >= 0).all() and (b <= 10).all()  # clipped to the crop
    # a crop at the bottom-right corner cannot contain the (0,0,2,2) box
    from torchvision.transforms.v2 import functional as F
    cropped = F.crop(target["boxes"], 10, 20, 10, 10)
    from fcnkit.data.transforms import SanitizeBoxes
    from torchvision.transforms import v2
    _, out = v2.Compose([v2.ClampBoundingBoxes(), SanitizeBoxes()])(
        F.crop(image, 10, 20, 10, 10), {"boxes": cropped, "labels": target["labels"]})
    assert out["labels"].tolist() == [] and out["boxes"].shape == (0, 4)


def test_color_jitter_leaves_mask_and_boxes_alone() -> None:
    image, target = _sample()
    t = train_transforms(IDENTITY, scale_range=None, hflip=False, color_jitter=(0.9, 0.9, 0.9, 0.4))
    out_image, out_target = t(image, target)
    assert torch.equal(out_target["mask"], target["mask"]) and torch.equal(out_target["boxes"], target["boxes"])
    assert not torch.equal(out_image, image.float() / 255)


# ---------------------------------------------------------------- collate

def test_pad_collate_pads_bottom_right() -> None:
    a = (tv_tensors.Image(torch.ones(3, 4, 5)), {"mask": tv_tensors.Mask(torch.full((4, 5), 2))})
    b = (tv_tensors.Image(torch.ones(3, 6, 3) * 2), {"mask": tv_tensors.Mask(torch.full((6, 3), 7))})
    images, targets = pad_collate([a, b])
    assert images.shape == (2, 3, 6, 5) and type(images) is torch.Tensor
    assert targets["mask"].shape == (2, 6, 5) and targets["mask"].dtype == torch.int64
    assert targets["size"].tolist() == [[4, 5], [6, 3]]
    assert (images[0, :, :4, :5] == 1).all() and images[0, :, 4:].abs().sum() == 0 and images[0, :, :, 5:].sum() == 0
    assert (targets["mask"][0, :4, :5] == 2).all() and (targets["mask"][0, 4:] == 255).all()
    assert (targets["mask"][1, :, :3] == 7).all() and (targets["mask"][1, :, 3:] == 255).all()
    assert images[1, :, :, 3:].sum() == 0


def test_pad_collate_keeps_boxes_per_sample() -> None:
    image, target = _sample()
    del target["mask"]
    images, targets = pad_collate([(image, target), (tv_tensors.Image(torch.zeros(3, 5, 40, dtype=torch.uint8)),
                                   {"boxes": target["boxes"][:1], "labels": torch.tensor([9])})])
    assert images.shape == (2, 3, 20, 40) and "mask" not in targets
    assert [len(b) for b in targets["boxes"]] == [2, 1] and targets["labels"][1].tolist() == [9]


def test_dataloader_with_transforms_and_collate(tmp_path: Path) -> None:
    write_camvid(tmp_path, {"train": 3}, size=(12, 16))
    ds = CamVid(tmp_path, "train", train_transforms(IMAGENET, scale_range=(0.5, 1.5)))
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=pad_collate)
    images, targets = next(iter(loader))
    assert images.dtype == torch.float32 and images.shape[:2] == (3, 3)
    assert targets["mask"].shape == (3, *images.shape[-2:])
    assert (targets["size"] <= torch.tensor(images.shape[-2:])).all()


# ---------------------------------------------------------------- build_dataset

def test_build_dataset_with_prefix_and_autodetect(tmp_path: Path) -> None:
    write_camvid(tmp_path, {"train": 2, "val": 1})
    assert detect_format(tmp_path) == "camvid"
    assert parse_spec(f"camvid:{tmp_path}") == ("camvid", tmp_path)
    assert len(build_dataset(f"camvid:{tmp_path}", "val")) == 1
    ds = build_dataset(str(tmp_path), "train", eval_transforms(IMAGENET))
    assert isinstance(ds, CamVid) and ds[0][0].dtype == torch.float32
    with pytest.raises(ValueError, match="unknown dataset format 'nosuch'"):
        build_dataset(f"nosuch:{tmp_path}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="cannot recognise"):
        build_dataset(tmp_path / "empty")
