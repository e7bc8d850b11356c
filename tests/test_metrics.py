"""Segmentation metrics (REFERENCE.md test vectors and NaN rules) and KITTI MaxF."""

import math

import pytest
import torch

from fcnkit.metrics import ConfusionMatrix, RoadMaxF, confusion_matrix, scores

IGNORE = 255


def _four(gt, pred, n=4):
    cm = ConfusionMatrix(n)
    cm.update(torch.tensor(gt), torch.tensor(pred))
    s = cm.compute()
    return s, (s["pixel_acc"], s["mean_acc"], s["mean_iu"], s["fw_iu"])


def test_reference_vector_1_with_ignore_and_absent_class():
    s, four = _four([0, 0, 0, 1, 1, 2, 255, 255], [0, 0, 1, 1, 2, 2, 3, 0])
    assert four == pytest.approx((0.666667, 0.722222, 0.5, 0.527778), abs=1e-6)
    assert four == pytest.approx((4 / 6, 13 / 18, 0.5, 19 / 36), abs=1e-12)
    # class 3: absent from gt; its only prediction sits on an ignored pixel -> NaN, left out
    assert s["class_iu"][:3] == pytest.approx([2 / 3, 1 / 3, 1 / 2])
    assert math.isnan(s["class_iu"][3]) and math.isnan(s["class_acc"][3])
    assert s["pixels"] == 6


def test_reference_vector_2_predicted_but_absent_counts_as_zero():
    s, four = _four([0, 0, 1, 1], [0, 3, 1, 1])
    assert four == pytest.approx((0.75, 0.75, 0.5, 0.75), abs=1e-12)
    assert s["class_iu"][3] == 0.0 and math.isnan(s["class_iu"][2])


def test_hist_orientation_is_gt_by_pred():
    hist = confusion_matrix(torch.tensor([0, 0, 1]), torch.tensor([1, 1, 1]), 2)
    assert hist.tolist() == [[0, 2], [0, 1]]


def test_accumulation_over_batches_equals_whole_dataset_not_mean_of_images():
    g = torch.Generator().manual_seed(0)
    gts = [torch.randint(0, 5, (2, 7, 9), generator=g) for _ in range(4)]
    preds = [torch.randint(0, 5, (2, 7, 9), generator=g) for _ in range(4)]
    gts[1][0, :3] = IGNORE
    cm = ConfusionMatrix(5)
    for gt, pred in zip(gts, preds):
        cm.update(gt, pred)
    whole = scores(confusion_matrix(torch.cat(gts), torch.cat(preds), 5))
    assert cm.compute() == whole
    per_image = sum(scores(confusion_matrix(g_, p_, 5))["mean_iu"] for g_, p_ in zip(gts, preds)) / 4
    assert per_image != pytest.approx(whole["mean_iu"], abs=1e-9)


def test_confusion_matrix_parity_with_torchmetrics():
    from torchmetrics.classification import MulticlassConfusionMatrix

    g = torch.Generator().manual_seed(1)
    gt = torch.randint(0, 6, (3, 20, 30), generator=g)
    gt[torch.rand(gt.shape, generator=g) < 0.1] = IGNORE
    pred = torch.randint(0, 6, (3, 20, 30), generator=g)
    ref = MulticlassConfusionMatrix(num_classes=6, ignore_index=IGNORE)(pred, gt)
    assert torch.equal(confusion_matrix(gt, pred, 6), ref)


def test_perfect_prediction_scores_one():
    gt = torch.tensor([[0, 1], [2, IGNORE]])
    s = scores(confusion_matrix(gt, gt.clamp(max=2), 3))
    assert (s["pixel_acc"], s["mean_acc"], s["mean_iu"], s["fw_iu"]) == (1.0, 1.0, 1.0, 1.0)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="differ in shape"):
        confusion_matrix(torch.zeros(3, dtype=torch.long), torch.zeros(4, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="class indices"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 2]), 2)


# --- KITTI road MaxF ---------------------------------------------------------------

def _brute_force(prob, gt):
    """Count TP/FP/FN at every devkit threshold directly (the second implementation)."""
    best = (-1.0, None)
    precisions, recalls = [], []
    for i in range(256):
        t = i / 255
        road = prob >= t
        tp = float(((gt == 1) & road).sum())
        fp = float(((gt == 0) & road).sum())
        fn = float(((gt == 1) & ~road).sum())
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn)
        f = 2 * p * r / (p + r) if p + r else 0.0
        if f > best[0]:
            best = (f, t)
        if p or r:
            precisions.append(p)
            recalls.append(r)
    ap = sum(max([p for p, r in zip(precisions, recalls) if r >= lv / 10 - 1e-12], default=0.0)
             for lv in range(11)) / 11
    return best[0], best[1], ap


def test_maxf_parity_with_brute_force_over_thresholds():
    g = torch.Generator().manual_seed(2)
    gt = (torch.rand(2, 16, 24, generator=g) < 0.4).long()
    # noisy but informative probabilities, with an ignored region
    prob = (0.3 * gt + 0.6 * torch.rand(gt.shape, generator=g)).clamp(0, 1)
    gt[:, :3] = IGNORE
    m = RoadMaxF()
    m.update(prob[0], gt[0])
    m.update(prob[1], gt[1])
    out = m.compute()
    max_f, thr, ap = _brute_force(prob.double(), gt)
    assert out["max_f"] == pytest.approx(max_f, abs=1e-12)
    assert out["best_threshold"] == pytest.approx(thr, abs=1e-12)
    assert out["ap"] == pytest.approx(ap, abs=1e-12)
    assert 0.5 < out["max_f"] < 1.0
    assert out["pixels"] == 2 * 13 * 24


def test_maxf_of_perfect_map_is_one_and_of_constant_map_is_prevalence_f1():
    gt = torch.tensor([1, 1, 0, 0, 0, IGNORE])
    m = RoadMaxF()
    m.update(torch.tensor([1.0, 0.9, 0.1, 0.0, 0.2, 0.7]), gt)
    out = m.compute()
    assert out["max_f"] == 1.0 and out["ap"] == 1.0
    assert 0.2 < out["best_threshold"] <= 0.9
    m = RoadMaxF()
    m.update(torch.full((5,), 0.5), gt[:5])  # everything road at t <= 0.5: P = 2/5, R = 1
    assert m.compute()["max_f"] == pytest.approx(2 * 0.4 / 1.4)


def test_maxf_without_road_pixels_is_an_error():
    m = RoadMaxF()
    m.update(torch.rand(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="no road pixels"):
        m.compute()
