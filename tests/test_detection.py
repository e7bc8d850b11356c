"""Detection: targets <-> decoding round trip, losses with known values, COCO mAP,
and every registered detection builder at a tiny size."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fcnkit.detection import (
    decode,
    detection_loss,
    heatmap_focal_loss,
    joint_loss,
    masked_l1,
    render_batch,
    render_targets,
)
from fcnkit.detection.targets import TARGET_KEYS
from fcnkit.metrics.detection import DetectionMAP
from fcnkit.models import create_model
from fcnkit.models.encoders import list_encoders
from fcnkit.models.registry import list_models
from fcnkit.models.saved import load_model, save_model
from fcnkit.models.spec import with_names


def _as_outputs(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rendered targets dressed up as a perfect network's raw maps (heatmap as logits)."""
    return {"heatmap": torch.logit(t["heatmap"].clamp(1e-6, 1 - 1e-6)), "size": t["size"], "offset": t["offset"]}


# ---------------------------------------------------------------- targets

def test_render_targets_values_at_the_centre_cell() -> None:
    # box centre (35, 55) px -> (8.75, 13.75) cells at stride 4; size 50x70 px -> 12.5x17.5 cells
    t = render_targets(torch.tensor([[10.0, 20, 60, 90]]), torch.tensor([1]), num_classes=2, map_size=(30, 20),
                       stride=4)
    assert t["heatmap"].shape == (2, 30, 20) and t["size"].shape == (2, 30, 20) and t["reg_mask"].shape == (30, 20)
    assert t["heatmap"][1, 13, 8] == 1.0 and t["heatmap"][0].max() == 0  # peak of exactly 1 on class 1 only
    assert (t["heatmap"] == 1).sum() == 1 and t["reg_mask"].sum() == 1 and t["reg_mask"][13, 8]
    assert t["size"][:, 13, 8].tolist() == pytest.approx([math.log(12.5), math.log(17.5)])  # log w, log h
    assert t["offset"][:, 13, 8].tolist() == [0.75, 0.75]
    # elliptical Gaussian: sigma = 0.09 * side in cells, so one cell right = exp(-1 / (2 sx^2))
    sx, sy = 0.09 * 12.5, 0.09 * 17.5
    assert t["heatmap"][1, 13, 9].item() == pytest.approx(math.exp(-1 / (2 * sx * sx)), rel=1e-5)
    assert t["heatmap"][1, 14, 8].item() == pytest.approx(math.exp(-1 / (2 * sy * sy)), rel=1e-5)


def test_render_targets_skips_degenerate_and_outside_boxes_and_overlaps_take_max() -> None:
    boxes = torch.tensor([[5.0, 5, 5, 9], [200, 200, 220, 230], [0, 0, 16, 16], [4, 4, 20, 20]])
    t = render_targets(boxes, torch.tensor([0, 0, 0, 0]), num_classes=1, map_size=(8, 8), stride=4)
    assert t["reg_mask"].sum() == 2  # zero-width box and centre-off-map box are dropped
    a = render_targets(boxes[2:3], torch.tensor([0]), num_classes=1, map_size=(8, 8), stride=4)["heatmap"]
    b = render_targets(boxes[3:4], torch.tensor([0]), num_classes=1, map_size=(8, 8), stride=4)["heatmap"]
    torch.testing.assert_close(t["heatmap"], torch.maximum(a, b))
    with pytest.raises(ValueError, match="outside 0..0"):
        render_targets(boxes[:1], torch.tensor([1]), num_classes=1, map_size=(8, 8), stride=4)


def test_render_targets_regression_region_weights_sizes_and_displacements() -> None:
    # 12.5 x 17.5 cells centred at (8.75, 13.75): the central 54% spans |dx| <= 3.375, |dy| <= 4.725 cells
    box = torch.tensor([[10.0, 20, 60, 90]])
    t = render_targets(box, torch.tensor([0]), num_classes=1, map_size=(30, 20), stride=4)
    region = t["reg_weight"] > 0
    xs = [x for x in range(20) if abs(x - 8.75) <= 3.375]
    ys = [y for y in range(30) if abs(y - 13.75) <= 4.725]
    assert region.sum() == len(xs) * len(ys) and region[ys[0], xs[0]] and region[ys[-1], xs[-1]]
    assert t["reg_weight"].sum().item() == pytest.approx(1.0, rel=1e-6)  # one object, weight 1 in all
    # weights follow the splat: the centre cell weighs most, each cell by its heatmap value
    torch.testing.assert_close(t["reg_weight"], t["heatmap"][0] * region / (t["heatmap"][0] * region).sum())
    assert t["reg_weight"].argmax().item() == 13 * 20 + 8
    # every region cell stores the box's log-size and the displacement from the cell to the centre
    assert t["size"][:, region].unique(dim=1).T.tolist() == [pytest.approx([math.log(12.5), math.log(17.5)])]
    assert t["offset"][:, 10, 6].tolist() == [2.75, 3.75] and t["offset"][:, 17, 11].tolist() == [-2.25, -3.25]
    # region 0: the centre cell alone (CenterNet), weight 1
    c = render_targets(box, torch.tensor([0]), num_classes=1, map_size=(30, 20), stride=4, region=0.0)
    assert (c["reg_weight"] > 0).sum() == 1 and c["reg_weight"][13, 8] == 1.0 and c["reg_mask"][13, 8]


def test_render_targets_smaller_box_wins_overlapping_regions() -> None:
    big, small = [0.0, 0, 64, 64], [24.0, 24, 40, 40]  # 16x16 and 4x4 cells sharing the centre (8, 8)
    for order in ([big, small], [small, big]):  # drawn largest first whatever the input order
        t = render_targets(torch.tensor(order), torch.tensor([0, 0]), num_classes=1, map_size=(16, 16), stride=4)
        assert t["size"][:, 8, 8].tolist() == pytest.approx([math.log(4.0)] * 2)
        assert t["size"][:, 4, 8].tolist() == pytest.approx([math.log(16.0)] * 2)  # outside the small region
        assert t["reg_mask"].sum() == 1  # one centre cell for both: the regression counts it once


@pytest.mark.parametrize("stride", [4, 8])
def test_boxes_to_targets_to_decode_round_trip(stride: int) -> None:
    g = torch.Generator().manual_seed(stride)
    h, w = 160, 224
    # centres on distinct cells, at least 3 cells apart so each is its own 3x3 peak
    cells = torch.randperm((h // stride // 3) * (w // stride // 3), generator=g)[:12]
    cy = (cells // (w // stride // 3) * 3 + 1).float() * stride + torch.rand(12, generator=g) * stride
    cx = (cells % (w // stride // 3) * 3 + 1).float() * stride + torch.rand(12, generator=g) * stride
    wh = torch.rand(12, 2, generator=g) * 40 + 4
    boxes = torch.stack([cx - wh[:, 0] / 2, cy - wh[:, 1] / 2, cx + wh[:, 0] / 2, cy + wh[:, 1] / 2], 1)
    labels = torch.randint(0, 3, (12,), generator=g)
    t = render_batch([boxes], [labels], num_classes=3, map_size=(h // stride, w // stride), stride=stride)
    (pred,) = decode(_as_outputs(t), stride=stride, threshold=0.5)
    assert len(pred["boxes"]) == 12
    order = torch.cdist(pred["boxes"], boxes).argmin(0)  # match each true box to its decoded one
    torch.testing.assert_close(pred["boxes"][order], boxes, atol=1e-3, rtol=0)  # well within a pixel
    assert pred["labels"][order].tolist() == labels.tolist()
    assert torch.all(pred["scores"] > 0.99)


def test_decode_topk_threshold_clipping_and_classwise_nms() -> None:
    heat = torch.full((1, 2, 10, 10), -10.0)
    heat[0, 0, 2, 2], heat[0, 0, 2, 4], heat[0, 1, 2, 3] = 3.0, 2.0, 1.0  # two class-0 peaks 2 cells apart
    heat[0, 0, 8, 8] = -1.0  # p = 0.27: below a 0.3 threshold
    size = torch.full((1, 2, 10, 10), math.log(4.0))  # 4x4 cells = 16x16 px at stride 4: neighbours overlap
    offset = torch.zeros(1, 2, 10, 10)
    out = {"heatmap": heat, "size": size, "offset": offset}
    (plain,) = decode(out, stride=4, threshold=0.3)
    assert plain["labels"].tolist() == [0, 0, 1]
    assert plain["scores"].tolist() == pytest.approx(torch.sigmoid(torch.tensor([3.0, 2.0, 1.0])).tolist())
    assert plain["boxes"][0].tolist() == [0.0, 0.0, 16.0, 16.0]
    (nms,) = decode(out, stride=4, threshold=0.3, nms_iou=0.3)  # class 0's second peak overlaps the first
    assert nms["labels"].tolist() == [0, 1] and nms["boxes"][1].tolist() == [4.0, 0.0, 20.0, 16.0]
    (top1,) = decode(out, stride=4, k=1, threshold=0.0)
    assert top1["scores"].tolist() == pytest.approx([torch.sigmoid(torch.tensor(3.0)).item()])
    (clipped,) = decode(out, stride=4, threshold=0.3, image_sizes=[(10, 12)])
    assert clipped["boxes"][0].tolist() == [0.0, 0.0, 12.0, 10.0]


# ---------------------------------------------------------------- losses

def test_focal_loss_known_value() -> None:
    # logits 0 (p = 1/2): positive cell -(1/2)^2 ln(1/2); negative with target 1/2:
    # -(1/2)^2 (1 - 1/2)^4 ln(1/2); one positive normalises by 1
    target = torch.tensor([1.0, 0.5]).view(1, 1, 1, 2)
    expected = math.log(2) * (0.25 + 0.25 * 0.0625)
    assert heatmap_focal_loss(torch.zeros(1, 1, 1, 2), target).item() == pytest.approx(expected, rel=1e-6)
    # near-perfect logits: loss near 0; saturated logits stay finite
    good = torch.tensor([20.0, -20.0]).view(1, 1, 1, 2)
    assert heatmap_focal_loss(good, torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)).item() < 1e-8
    assert math.isfinite(heatmap_focal_loss(torch.tensor([-1e4, 1e4]).view(1, 1, 1, 2), target).item())


def test_masked_l1_counts_only_centre_cells_per_object() -> None:
    pred, target = torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3)
    target[0, :, 1, 1] = torch.tensor([2.0, 4.0])
    pred[0, :, 0, 0] = 100.0  # off-centre errors do not count
    mask = torch.zeros(1, 3, 3, dtype=torch.bool)
    mask[0, 1, 1] = True
    assert masked_l1(pred, target, mask).item() == 6.0  # |0-2| + |0-4| over 1 object


def test_joint_loss_uses_only_the_labels_each_sample_has() -> None:
    n, c, k = 3, 1, 4
    outputs = {"heatmap": torch.randn(n, c, 4, 4, requires_grad=True), "size": torch.randn(n, 2, 4, 4),
               "offset": torch.randn(n, 2, 4, 4), "seg": torch.randn(n, k, 16, 16, requires_grad=True)}
    boxes = [torch.tensor([[0.0, 0, 8, 8]]), torch.zeros(0, 4), torch.tensor([[4.0, 4, 12, 14]])]
    labels = [torch.tensor([0]), torch.zeros(0, dtype=torch.int64), torch.tensor([0])]
    t = render_batch(boxes, labels, num_classes=c, map_size=(4, 4), stride=4)
    t["mask"] = torch.randint(0, k, (n, 16, 16))
    t["mask"][1, :8] = 255
    t["has_boxes"] = torch.tensor([True, False, True])
    t["has_mask"] = torch.tensor([False, True, True])
    losses = joint_loss(outputs, t)
    det = detection_loss({key: outputs[key][[0, 2]] for key in ("heatmap", "size", "offset")},
                         {key: t[key][[0, 2]] for key in TARGET_KEYS})
    seg = torch.nn.functional.cross_entropy(outputs["seg"][1:], t["mask"][1:], ignore_index=255)
    torch.testing.assert_close(losses["det"], det["det"])
    torch.testing.assert_close(losses["seg"], seg)
    torch.testing.assert_close(losses["total"], det["det"] + seg)
    weighted = joint_loss(outputs, t, det_weight=0.1)  # the box losses' share of the shared encoder's gradient
    torch.testing.assert_close(weighted["total"], 0.1 * det["det"] + seg)
    torch.testing.assert_close(weighted["det"], det["det"])  # parts are reported unscaled
    losses["total"].backward()
    assert outputs["heatmap"].grad[1].abs().sum() == 0 and outputs["heatmap"].grad[0].abs().sum() > 0
    assert outputs["seg"].grad[0].abs().sum() == 0 and outputs["seg"].grad[1].abs().sum() > 0
    # an all-ignore mask contributes 0, not NaN
    t["mask"][:] = 255
    assert joint_loss(outputs, {**t, "has_boxes": torch.tensor([False] * 3)})["total"].item() == 0.0


# ---------------------------------------------------------------- mAP

def _random_scene(seed: int, n_images: int = 6):
    g = torch.Generator().manual_seed(seed)
    targets = []
    for _ in range(n_images):
        k = int(torch.randint(1, 5, (1,), generator=g))
        xy = torch.rand(k, 2, generator=g) * 200
        wh = torch.rand(k, 2, generator=g) * 80 + 20
        targets.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(0, 3, (k,), generator=g)})
    return targets, g


def test_map_of_perfect_predictions_is_one_and_shifted_boxes_score_lower() -> None:
    targets, g = _random_scene(0)
    perfect = [{"boxes": t["boxes"], "scores": torch.rand(len(t["boxes"]), generator=g), "labels": t["labels"]}
               for t in targets]
    m = DetectionMAP()
    m.update(perfect, targets)
    stats = m.compute()
    assert stats["map"] == pytest.approx(1.0) and stats["map_50"] == pytest.approx(1.0)
    assert stats["map_75"] == pytest.approx(1.0)

    def shifted(frac: float) -> dict[str, float]:
        # shift every box right by frac of its width: IoU = (1 - frac) / (1 + frac)
        preds = []
        for p in perfect:
            b = p["boxes"].clone()
            b[:, [0, 2]] += frac * (b[:, 2] - b[:, 0]).unsqueeze(1)
            preds.append({**p, "boxes": b})
        m = DetectionMAP()
        m.update(preds, targets)
        return m.compute()

    small = shifted(0.1)  # IoU 0.818: counts at 0.5..0.80, misses 0.85..0.95
    assert small["map_50"] == pytest.approx(1.0) and small["map_75"] == pytest.approx(1.0)
    assert small["map"] == pytest.approx(7 / 10)
    big = shifted(0.3)  # IoU 0.538: counts only at 0.50
    assert big["map_50"] == pytest.approx(1.0) and big["map_75"] == 0.0 and big["map"] == pytest.approx(0.1)
    assert shifted(0.7)["map_50"] == 0.0  # IoU 0.176


def test_map_matches_torchmetrics_on_noisy_predictions() -> None:
    torchmetrics_detection = pytest.importorskip("torchmetrics.detection")
    targets, g = _random_scene(1, n_images=8)
    targets = [{**t, "boxes": t["boxes"].round()} for t in targets]  # whole pixels: XYWH exact in float32
    preds = []
    for t in targets:
        k = len(t["boxes"])
        noisy = (t["boxes"] + torch.randn(k, 4, generator=g) * 8).round()
        false = t["boxes"] + 60
        preds.append({"boxes": torch.cat([noisy, false]), "scores": torch.rand(2 * k, generator=g),
                      "labels": torch.cat([t["labels"], torch.randint(0, 3, (k,), generator=g)])})
    ours = DetectionMAP()
    ours.update(preds, targets)
    # COCOeval's own float64 thresholds: torchmetrics' default float32 linspace puts e.g. the
    # 0.3 recall threshold a hair above 3/10 and so disagrees with COCOeval on exact ties
    ref = torchmetrics_detection.MeanAveragePrecision(
        box_format="xyxy", iou_type="bbox", backend="pycocotools",
        iou_thresholds=np.linspace(0.5, 0.95, 10).tolist(), rec_thresholds=np.linspace(0.0, 1.0, 101).tolist())
    ref.update(preds, targets)
    expected = ref.compute()
    got = ours.compute()
    assert 0.05 < got["map"] < 0.95
    for key in ("map", "map_50", "map_75", "mar_100"):
        assert got[key] == pytest.approx(float(expected[key]), abs=1e-6)


def test_map_edge_cases() -> None:
    targets, _ = _random_scene(2, n_images=2)
    m = DetectionMAP()
    m.update([{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}] * 2,
             targets)
    assert m.compute()["map"] == 0.0  # found nothing
    m.reset()
    assert math.isnan(m.compute()["map"])  # nothing to score against
    with pytest.raises(ValueError, match="2 predictions for 1 images"):
        m.update([targets[0], targets[1]], targets[:1])


# ---------------------------------------------------------------- models

TINY = {"vgg16": 1 / 16, "mobilenet_v3_large": 0.25}


@pytest.mark.parametrize("name", list_models("detection") + list_models("joint"))
@pytest.mark.parametrize("encoder", list_encoders())
def test_every_detection_builder_runs_forward_and_backward(name: str, encoder: str) -> None:
    kwargs = {"det_classes": 2, "num_classes": 3} if name == "fcn8s-joint" else {"det_classes": 2}
    model = create_model(name, encoder=encoder, width=TINY.get(encoder, 1.0), **kwargs)
    x = torch.randn(2, 3, 37, 50)  # not a multiple of 32: padded inside, maps cropped to ceil(H/4)
    out = model(x)
    assert out["heatmap"].shape == (2, 2, 10, 13)
    assert out["size"].shape == out["offset"].shape == (2, 2, 10, 13)
    if name == "fcn8s-joint":
        assert out["seg"].shape == (2, 3, 37, 50)
    # the focal-loss prior: every centre probability starts at 0.01 (HEATMAP_PRIOR)
    torch.testing.assert_close(out["heatmap"].sigmoid(), torch.full_like(out["heatmap"], 0.01), atol=0.002, rtol=0)
    sum(v.float().square().mean() for v in out.values()).backward()
    first = next(p for p in model.encoder.parameters() if p.requires_grad)
    assert first.grad is not None and first.grad.abs().sum() > 0
    assert model.spec.output_stride == 4 and model.spec.name == name.replace("-", "_")


def test_output_stride_8_and_geometry_checks() -> None:
    model = create_model("fcn8s_det", det_classes=1, encoder="mobilenet_v3_large", width=0.25, output_stride=8)
    assert model(torch.randn(1, 3, 33, 64))["heatmap"].shape == (1, 1, 5, 8)
    with pytest.raises(ValueError, match="geometry='fast'"):
        create_model("fcn8s_det", det_classes=1, width=1 / 16, geometry="reference")
    with pytest.raises(ValueError, match="output_stride"):
        create_model("fcn8s_det", det_classes=1, encoder="mobilenet_v3_large", width=0.25, output_stride=16)


def test_saved_joint_model_rebuilds_with_identical_outputs(tmp_path) -> None:
    model = create_model("fcn8s_joint", num_classes=3, det_classes=2, encoder="mobilenet_v3_large", width=0.25,
                         output_stride=8).eval()
    model.spec = with_names(model.spec, ["a", "b", "c"])
    save_model(model, tmp_path / "joint.pt")
    loaded = load_model(tmp_path / "joint.pt")
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert set(a) == {"heatmap", "size", "offset", "seg"} and loaded.spec.det_classes == 2
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    assert loaded.spec.classes == ("a", "b", "c")


def test_decoding_suppresses_duplicate_peaks_by_default():
    """A broad heatmap with two peaks on one object: NMS keeps one box unless told not to."""
    heat = torch.full((1, 1, 16, 16), -6.0)
    heat[0, 0, 8, 8], heat[0, 0, 8, 10] = 3.0, 2.5  # two local maxima, 2 cells apart
    maps = {"heatmap": heat, "size": torch.full((1, 2, 16, 16), math.log(8.0)), "offset": torch.zeros(1, 2, 16, 16)}
    one = decode(maps, stride=4)[0]
    both = decode(maps, stride=4, nms_iou=None)[0]
    assert len(one["boxes"]) == 1 and len(both["boxes"]) == 2
    torch.testing.assert_close(one["boxes"][0], torch.tensor([16.0, 16.0, 48.0, 48.0]))  # (8 +- 4) cells x 4 px


def test_region_box_giou_loss_is_zero_for_exact_boxes_and_rewards_overlap() -> None:
    from fcnkit.detection.losses import detection_loss, region_box_giou_loss

    t = render_targets(torch.tensor([[8.0, 4.0, 40.0, 28.0]]), torch.tensor([0]), num_classes=1, map_size=(8, 12),
                       stride=4)
    size, offset, mask = t["size"][None], t["offset"][None], t["reg_mask"][None]
    assert region_box_giou_loss(size, offset, size, offset, mask).item() == pytest.approx(0.0, abs=1e-6)
    # 8 x 6 cells; predicting 10% too wide AND 10% too tall is worse in IoU than only 20% too wide
    both = size.clone()
    both[:, :, mask[0]] += math.log(1.1)
    wide = size.clone()
    wide[:, 0][mask] += math.log(1.2)
    loss_both = region_box_giou_loss(both, offset, size, offset, mask).item()
    loss_wide = region_box_giou_loss(wide, offset, size, offset, mask).item()
    assert loss_both == pytest.approx(1 - 1 / 1.21, abs=1e-5) and loss_wide == pytest.approx(1 - 1 / 1.2, abs=1e-5)
    # a box shifted 1.5 widths away does not overlap at all: GIoU loss above 1 (the gap counts)
    shifted = offset.clone()
    shifted[:, 0] += 12.0  # every region cell's box, not only the centre's
    assert region_box_giou_loss(size, shifted, size, offset, mask).item() > 1.0
    # it is part of the detection loss, and no centre cell means 0 (with a graph)
    maps = {"heatmap": torch.zeros(1, 1, 8, 12, requires_grad=True), "size": size.clone().requires_grad_(),
            "offset": shifted.requires_grad_()}
    parts = detection_loss(maps, {**{k: v[None] for k, v in t.items()}})
    assert parts["giou"].item() > 1.0 and parts["det"].item() == pytest.approx(
        parts["heatmap"].item() + parts["size"].item() + parts["offset"].item() + parts["giou"].item(), rel=1e-6)
    empty = region_box_giou_loss(size.requires_grad_(), offset, size, offset, torch.zeros_like(mask))
    assert empty.item() == 0.0 and empty.requires_grad


def test_confidence_report_finds_the_threshold_that_separates_true_from_false_peaks() -> None:
    from fcnkit.metrics.detection import confidence_report, match_scores

    truth = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]]), "labels": torch.tensor([0, 0])},
             {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([0])}]
    preds = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 9], [50, 50, 60, 60], [20, 20, 30, 30]]),
              "scores": torch.tensor([0.9, 0.8, 0.4, 0.7]), "labels": torch.tensor([0, 0, 0, 0])},
             {"boxes": torch.tensor([[1.0, 1, 11, 11], [0, 0, 10, 10]]), "scores": torch.tensor([0.6, 0.2]),
              "labels": torch.tensor([0, 1])}]  # the second is the right box but the wrong class
    scores, hits, n = match_scores(preds, truth)
    # the duplicate (0.8) finds its box taken: false; 0.4 overlaps nothing; 0.2 has the wrong class
    assert n == 3 and dict(zip(scores.round(decimals=4).tolist(), hits.tolist())) == {0.9: True, 0.8: False, 0.4: False, 0.7: True,
                                                                    0.6: True, 0.2: False}
    r = confidence_report(preds, truth)
    # sorted: .9 T, .8 F, .7 T, .6 T, .4 F, .2 F -> at 0.6: P = 3/4, R = 3/3, F1 = 6/7 (the best)
    assert r["conf_best_f1"] == pytest.approx(0.6) and r["f1_best"] == pytest.approx(6 / 7)
    assert (r["precision_at_conf"], r["recall_at_conf"]) == (0.75, 1.0)
    assert r["true_score_median"] == pytest.approx(0.7) and r["false_score_max"] == pytest.approx(0.8)
    empty = confidence_report([], [])
    assert math.isnan(empty["conf_best_f1"])


def test_flip_averaged_box_maps_follow_the_mirror_and_average_the_two_views() -> None:
    """CenterNet's flip test: for an input as wide as the encoder's multiple the averaged heatmap and
    sizes are mirror-equivariant; for any width they are the mean of the plain view and the mirrored
    view (padded on the left, mirrored back, cut to the plain maps), offsets the plain view's."""
    import torch.nn.functional as F

    from fcnkit.inference.tta import Augmented, flip_averaged

    torch.manual_seed(3)
    model = create_model("fcn8s_joint", num_classes=3, det_classes=2, encoder="mobilenet_v3_large", width=0.25).eval()
    for p in model.parameters():  # heads start at their prior: give every map an opinion
        p.data.normal_(0, 0.3)
    multiple = model.spec.pad_multiple
    with torch.no_grad():
        x = torch.randn(1, 3, 40, 2 * multiple)
        a, b = flip_averaged(model, x, multiple=multiple), flip_averaged(model, x.flip(-1), multiple=multiple)
        for key in ("heatmap", "size", "seg"):
            torch.testing.assert_close(b[key], a[key].flip(-1), atol=1e-4, rtol=1e-4)

        x = torch.randn(1, 3, 37, 50)  # pads on the left by 14 pixels when mirrored
        plain, out = model(x), flip_averaged(model, x, multiple=multiple)
        mirrored = model(F.pad(x.flip(-1), (14, 0)))
        heat = mirrored["heatmap"].flip(-1)[..., :13]
        expected = ((plain["heatmap"].sigmoid() + heat.sigmoid()) / 2).logit()
        assert out["heatmap"].shape == plain["heatmap"].shape == (1, 2, 10, 13)
        torch.testing.assert_close(out["heatmap"], expected, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(out["size"], (plain["size"] + mirrored["size"].flip(-1)[..., :13]) / 2)
        assert torch.equal(out["offset"], plain["offset"])
        seg = (plain["seg"].softmax(1) + mirrored["seg"].flip(-1)[..., :50].softmax(1)) / 2
        torch.testing.assert_close(out["seg"], seg.log(), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(out["heatmap"], plain["heatmap"], atol=1e-3)  # the mirrored view counted

        torch.testing.assert_close(Augmented(model, scales=(1.0,), flip=True)(x)["heatmap"], out["heatmap"])
    with pytest.raises(ValueError, match="horizontal flip only.*--flip instead"):
        Augmented(model, scales=(0.75, 1.0, 1.25), flip=True)
