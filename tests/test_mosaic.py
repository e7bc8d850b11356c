"""Mosaic augmentation: four samples tiled around a centre, boxes and masks moved with them."""

from __future__ import annotations

import random

import pytest
import torch
from torchvision import tv_tensors

from fcnkit.data.mosaic import Mosaic


def _sample(value: int, h: int, w: int, boxes: list[list[float]] | None = None, mask: bool = False):
    image = tv_tensors.Image(torch.full((3, h, w), value, dtype=torch.uint8))
    target = {}
    if boxes is not None:
        target["boxes"] = tv_tensors.BoundingBoxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                                   format="XYXY", canvas_size=(h, w))
        target["labels"] = torch.arange(len(boxes), dtype=torch.int64)
    if mask:
        target["mask"] = tv_tensors.Mask(torch.full((h, w), value // 10, dtype=torch.int64))
    return image, target


def test_tiles_meet_at_the_centre_and_boxes_move_with_their_image() -> None:
    # canvas 2 x (40, 60) = 80 x 120, centre (y 40, x 50); every image 40 x 60
    samples = [_sample(10, 40, 60, [[10, 10, 30, 30]]),  # top left: placed at (0, -10): box x 0..20, y 10..30
               _sample(20, 40, 60, [[0, 0, 50, 40]]),  # top right at (0, 50): x 50..100 kept whole
               _sample(30, 40, 60, [[0, 0, 8, 8]]),  # bottom left at (40, -10): x -10..-2, off the canvas: dropped
               _sample(40, 40, 60, [])]  # bottom right at (40, 50)
    image, target = Mosaic(samples, (40, 60), p=1.0).tile(samples, (40, 50))
    assert image.shape == (3, 40, 60) and image.dtype == torch.uint8
    # quadrant colours at half size: top left (0..20, 0..25), top right (0..20, 25..55), below y 20 the others;
    # the 5 px right of x 55 (canvas x 110..120) are uncovered: black
    assert image[0, 5, 10] == 10 and image[0, 5, 40] == 20 and image[0, 30, 10] == 30 and image[0, 30, 40] == 40
    assert image[0, 5, 58] == 0
    expected = torch.tensor([[0, 10, 20, 30], [50, 0, 100, 40]], dtype=torch.float32) / 2  # the first cut at x 0
    torch.testing.assert_close(target["boxes"].as_subclass(torch.Tensor), expected)
    assert target["boxes"].canvas_size == (40, 60) and target["labels"].tolist() == [0, 0]


def test_a_box_mostly_cut_away_is_dropped_and_one_mostly_left_is_kept() -> None:
    # top-left image 40 x 60 placed at (-20, -30) by the centre (20, 30): only its bottom-right quarter shows
    samples = [_sample(10, 40, 60, [[0, 0, 40, 30],  # 10 of 40 wide x 10 of 30 high left: 1/12 < 1/4, dropped
                                    [20, 10, 60, 40]])]  # 30/40 x 20/30 = 1/2 left: kept, cut at the canvas edge
    samples += [_sample(v, 10, 10, []) for v in (20, 30, 40)]
    _, target = Mosaic(samples, (40, 60), p=1.0).tile(samples, (20, 30))
    torch.testing.assert_close(target["boxes"].as_subclass(torch.Tensor), torch.tensor([[0.0, 0, 15, 10]]))
    assert target["labels"].tolist() == [1]


def test_masks_are_tiled_and_uncovered_canvas_is_ignored() -> None:
    samples = [_sample(v, 40, 60, mask=True) for v in (10, 20, 30, 40)]
    _, target = Mosaic(samples, (40, 60), p=1.0, ignore_index=255).tile(samples, (40, 50))
    mask = target["mask"]
    assert mask.shape == (40, 60) and mask.dtype == torch.int64
    assert mask[5, 10] == 1 and mask[5, 40] == 2 and mask[30, 10] == 3 and mask[30, 40] == 4 and mask[5, 58] == 255
    assert "boxes" not in target


def test_probability_zero_or_mixed_labels_give_the_sample_as_it_is() -> None:
    plain = [_sample(10 * i, 8, 8, [[0, 0, 4, 4]]) for i in range(1, 6)]
    assert Mosaic(plain, (8, 8), p=0.0)[2][0] is plain[2][0]
    random.seed(0)
    tiled = Mosaic(plain, (8, 8), p=1.0)[2]
    assert tiled[0] is not plain[2][0] and tiled[0].shape == (3, 8, 8)
    mixed = [_sample(10, 8, 8, mask=True)] + [_sample(20, 8, 8, [[0, 0, 4, 4]]) for _ in range(4)]
    assert Mosaic(mixed, (8, 8), p=1.0)[0][0] is mixed[0][0]  # a mask sample among box samples: not tiled
    with pytest.raises(ValueError, match="mosaic probability"):
        Mosaic(plain, (8, 8), p=1.5)


def test_the_trainer_tiles_with_the_seeded_draws_of_each_sample(tmp_path) -> None:
    """mosaic in a recipe: needs a crop; the same sample and epoch tile the same (resumable)."""
    from fcnkit.config import TrainConfig, from_dict
    from fcnkit.engine.sampling import SeededSamples

    with pytest.raises(ValueError, match="mosaic needs crop_size"):
        from_dict({"mosaic": 0.5}, base=TrainConfig())
    data = [_sample(10 * i, 16, 16, [[2, 2, 12, 12]]) for i in range(1, 9)]
    seeded = SeededSamples(Mosaic(data, (16, 16), p=1.0), seed=3)
    a, b = seeded[(1, 4)], seeded[(1, 4)]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["boxes"], b[1]["boxes"])
    assert not torch.equal(seeded[(2, 4)][0], a[0])
