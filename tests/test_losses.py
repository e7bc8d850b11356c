"""Losses: ignore index, reductions, class weights, focal and Lovász against known values."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from fcnkit.losses import SegmentationLoss, focal_loss, load_class_weights, lovasz_softmax
from fcnkit.metrics import confusion_matrix, scores

IGNORE = 255


def _batch(seed=0, n=2, c=4, h=5, w=6):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, h, w, generator=g)
    target = torch.randint(0, c, (n, h, w), generator=g)
    target[0, 0] = IGNORE
    return logits, target


def test_zero_logits_give_ln_c_per_pixel_and_sum_is_unnormalised():
    logits = torch.zeros(1, 11, 4, 5)
    target = torch.randint(0, 11, (1, 4, 5))
    target[0, 0, :2] = IGNORE  # 18 labelled pixels
    assert SegmentationLoss("ce")(logits, target).item() == pytest.approx(math.log(11))
    assert SegmentationLoss("ce", reduction="sum")(logits, target).item() == pytest.approx(18 * math.log(11))


def test_ignored_pixels_get_no_gradient():
    logits, target = _batch()
    logits.requires_grad_(True)
    SegmentationLoss("ce", reduction="sum")(logits, target).backward()
    assert logits.grad[0, :, 0].abs().sum() == 0
    assert logits.grad[0, :, 1].abs().sum() > 0


def test_class_weights_weight_the_mean():
    logits, target = _batch(1)
    w = torch.tensor([1.0, 2.0, 0.5, 3.0])
    got = SegmentationLoss("ce", class_weights=w)(logits, target)
    valid = target != IGNORE
    per_pixel = F.cross_entropy(logits, target.clamp(max=3), reduction="none")[valid]
    ww = w[target[valid]]
    assert got.item() == pytest.approx(float((ww * per_pixel).sum() / ww.sum()), rel=1e-6)


def test_focal_gamma_zero_is_cross_entropy_and_gamma_down_weights_easy_pixels():
    logits, target = _batch(2)
    w = torch.tensor([1.0, 2.0, 0.5, 3.0])
    ce = F.cross_entropy(logits, target, weight=w, ignore_index=IGNORE)
    assert focal_loss(logits, target, gamma=0.0, weight=w).item() == pytest.approx(ce.item(), rel=1e-6)
    # one pixel, p_t = 0.8: focal = -(0.2 ** 2) * ln 0.8
    logit = torch.log(torch.tensor([0.8, 0.2])).view(1, 2, 1, 1)
    got = focal_loss(logit, torch.zeros(1, 1, 1, dtype=torch.long), gamma=2.0)
    assert got.item() == pytest.approx(-(0.2 ** 2) * math.log(0.8), rel=1e-6)


def test_lovasz_at_one_hot_predictions_is_mean_jaccard_loss():
    g = torch.Generator().manual_seed(3)
    target = torch.randint(0, 5, (2, 8, 8), generator=g)
    target[1, :2] = IGNORE
    pred = torch.where(torch.rand(target.shape, generator=g) < 0.7, target.clamp(max=4),
                       torch.randint(0, 5, target.shape, generator=g))
    probs = F.one_hot(pred, 5).movedim(-1, 1).float()
    s = scores(confusion_matrix(target, pred, 5))
    present = [k for k in range(5) if (target == k).any()]
    expected = sum(1 - s["class_iu"][k] for k in present) / len(present)
    assert lovasz_softmax(probs, target).item() == pytest.approx(expected, abs=1e-6)
    assert lovasz_softmax(F.one_hot(target.clamp(max=4), 5).movedim(-1, 1).float(), target).item() == 0.0


def test_lovasz_alone_drives_predictions_to_the_target():
    logits, target = _batch(4, n=1, c=3, h=6, w=6)
    logits.requires_grad_(True)
    loss = SegmentationLoss("lovasz")
    before = loss(logits, target).item()
    opt = torch.optim.SGD([logits], lr=50.0)
    for _ in range(40):
        opt.zero_grad()
        loss(logits, target).backward()
        opt.step()
    valid = target != IGNORE
    assert torch.equal(logits.argmax(1)[valid], target[valid])
    assert loss(logits, target).item() < 0.5 * before


def test_loss_accepts_bf16_logits_and_bad_names_are_rejected():
    logits, target = _batch(5)
    got = SegmentationLoss("ce")(logits.bfloat16(), target)
    assert got.dtype == torch.float32
    with pytest.raises(ValueError, match="unknown loss"):
        SegmentationLoss("dice")
    with pytest.raises(ValueError, match="reduction='mean'"):
        SegmentationLoss("lovasz", reduction="sum")


def test_load_class_weights(tmp_path):
    p = tmp_path / "stats.json"
    p.write_text(json.dumps({"classes": ["a", "b", "c"], "class_weights": [0.5, 1.0, 4.0]}))
    assert load_class_weights(p, 3).tolist() == [0.5, 1.0, 4.0]
    with pytest.raises(ValueError, match="3 class weights for a 4-class model"):
        load_class_weights(p, 4)
    p.write_text("{not json")
    with pytest.raises(ValueError, match="stats.json: not valid JSON"):
        load_class_weights(p, 3)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_class_weights(tmp_path / "missing.json", 3)


def test_class_weights_from_fcnkit_data_stats_json(tmp_path):
    import numpy as np
    from PIL import Image

    from fcnkit.data import CamVid
    from fcnkit.data.stats import class_statistics, write_json

    for split in ("train", "trainannot"):
        (tmp_path / split).mkdir()
    labels = np.zeros((8, 10), np.uint8)
    labels[:, 6:] = 3  # road
    labels[0, 0] = 9  # one pedestrian pixel: rare
    labels[1] = 11  # void
    for i in range(2):
        Image.fromarray(np.full((8, 10, 3), 90, np.uint8)).save(tmp_path / "train" / f"{i}.png")
        Image.fromarray(labels).save(tmp_path / "trainannot" / f"{i}.png")
    stats = class_statistics(CamVid(tmp_path, "train"), progress=False)
    write_json(stats, tmp_path / "stats.json")
    w = load_class_weights(tmp_path / "stats.json", 11)
    assert w.tolist() == pytest.approx(stats["class_weights"])
    assert w[9] > 1 > w[0]  # median-frequency balancing: rare up, frequent down
    assert w[5] == 0  # a class that never occurs gets no weight


def test_ohem_keeps_only_the_hardest_pixels():
    # 4 labelled pixels with known per-pixel losses, one ignored
    logits = torch.zeros(1, 2, 1, 5)
    logits[0, 0, 0] = torch.tensor([4.0, 2.0, 0.0, -2.0, 9.0])  # class 0 logit; class 1 logit is 0
    target = torch.tensor([[[0, 0, 0, 0, 255]]])
    per_pixel = torch.nn.functional.cross_entropy(logits, target, ignore_index=255, reduction="none")[0, 0, :4]
    hardest_two = per_pixel.sort(descending=True).values[:2]
    got = SegmentationLoss("ohem", ohem_fraction=0.5)(logits, target)
    assert got.item() == pytest.approx(hardest_two.mean().item())
    # the whole share is plain cross-entropy, weighted too
    w = torch.tensor([2.0, 1.0])
    target2 = torch.tensor([[[0, 1, 0, 1, 255]]])
    full = SegmentationLoss("ohem", ohem_fraction=1.0, class_weights=w)(logits, target2)
    ce = torch.nn.functional.cross_entropy(logits, target2, weight=w, ignore_index=255)
    assert full.item() == pytest.approx(ce.item())
    # a fraction of 0.25 of 4 pixels keeps exactly the single hardest
    assert SegmentationLoss("ohem", ohem_fraction=0.25)(logits, target).item() == pytest.approx(per_pixel.max().item())
    with pytest.raises(ValueError, match="ohem_fraction"):
        SegmentationLoss("ohem", ohem_fraction=0.0)
