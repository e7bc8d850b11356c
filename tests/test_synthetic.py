"""The generated street scenes: deterministic, consistent masks and boxes, the sample contract."""

import numpy as np
import torch
from torchvision import tv_tensors

from fcnkit.data.synthetic import CAR, CLASSES, SyntheticStreets, generate_street_scene


def test_same_seed_same_scene_other_seed_other_scene():
    a, b, c = generate_street_scene(3), generate_street_scene(3), generate_street_scene(4)
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["mask"], b["mask"])
    assert not np.array_equal(a["image"], c["image"])


def test_every_class_appears_and_boxes_cover_cars():
    seen = np.zeros(len(CLASSES), bool)
    for seed in range(20):
        s = generate_street_scene(seed, (96, 128))
        assert s["image"].shape == (96, 128, 3) and s["mask"].shape == (96, 128)
        seen[np.unique(s["mask"])] = True
        car_pixels = (s["mask"] == CAR).sum()
        in_boxes = np.zeros_like(s["mask"], bool)
        for x0, y0, x1, y1 in s["boxes"].astype(int):
            assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 96
            in_boxes[y0:y1, x0:x1] = True
        # every car pixel lies in some box (nearer cars may occlude farther ones' pixels)
        assert car_pixels > 0 and (s["mask"][~in_boxes] == CAR).sum() == 0
    assert seen.all()


def test_dataset_follows_sample_contract():
    ds = SyntheticStreets(5, size=(64, 80), seed=10)
    image, target = ds[2]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.shape == (3, 64, 80)
    assert isinstance(target["mask"], tv_tensors.Mask) and target["mask"].dtype == torch.int64
    assert isinstance(target["boxes"], tv_tensors.BoundingBoxes) and target["boxes"].canvas_size == (64, 80)
    assert len(target["labels"]) == len(target["boxes"]) and len(ds) == 5
    assert np.array_equal(target["mask"].numpy(), generate_street_scene(12, (64, 80))["mask"])
