"""Detection training: batching with rendered targets, overfitting, the joint model on
mixed batches, checkpoints/resume, and the real raccoon data through the whole chain."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import data_dir
from torchvision.transforms import v2

from fcnkit.data.synthetic import SyntheticStreets
from fcnkit.data.transforms import eval_transforms
from fcnkit.detection import DetectionCollate, decode, detection_loss
from fcnkit.detection.evaluate import evaluate_detection, make_loader
from fcnkit.detection.train import train_detection
from fcnkit.metrics.detection import DetectionMAP
from fcnkit.models import create_model
from fcnkit.models.saved import load_model

SIZE = (64, 96)


def _tiny(name: str = "fcn8s_det", **kw):
    kw = {"num_classes": 1, **kw} if name == "fcn8s_det" else {"num_classes": 7, "det_classes": 1, **kw}
    return create_model(name, encoder="mobilenet_v3_large", width=0.25, **kw)


class OnlyOneKind(torch.utils.data.Dataset):
    """Street scenes where even samples keep only their mask and odd ones only their boxes."""

    def __init__(self, base: torch.utils.data.Dataset) -> None:
        self.base, self.ignore_index = base, 255

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        image, target = self.base[i]
        keep = ("mask",) if i % 2 == 0 else ("boxes", "labels")
        return image, {k: v for k, v in target.items() if k in keep}


def test_collate_mixed_batch_flags_and_targets() -> None:
    model = _tiny("fcn8s_joint")
    ds = OnlyOneKind(SyntheticStreets(4, size=SIZE, transforms=eval_transforms(model.preprocessing)))
    images, t = DetectionCollate(num_classes=1, stride=4)([ds[i] for i in range(4)])
    assert images.shape == (4, 3, *SIZE)
    assert t["has_mask"].tolist() == [True, False, True, False]
    assert t["has_boxes"].tolist() == [False, True, False, True]
    assert t["heatmap"].shape == (4, 1, 16, 24) and t["size"].shape == t["offset"].shape == (4, 2, 16, 24)
    assert (t["mask"][1] == 255).all() and (t["mask"][0] != 255).any()  # box-only sample: nothing to segment
    assert t["reg_mask"][0].sum() == 0 and t["heatmap"][0].max() == 0  # mask-only sample: no centres
    assert t["reg_mask"][1].sum() == len(t["boxes"][1]) > 0
    assert t["image_size"].tolist() == [list(SIZE)] * 4


def test_detection_loss_falls_when_overfitting_two_images() -> None:
    model = _tiny(output_stride=4)
    ds = SyntheticStreets(2, size=SIZE, transforms=eval_transforms(model.preprocessing))
    images, t = DetectionCollate(num_classes=1, stride=4)([ds[0], ds[1]])
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    history = []
    for _ in range(40):
        losses = detection_loss(model(images), t)
        opt.zero_grad()
        losses["det"].backward()
        opt.step()
        history.append({k: float(v.detach()) for k, v in losses.items()})
    first, last = history[0], history[-1]
    assert last["det"] < 0.3 * first["det"], (first, last)
    assert last["heatmap"] < 0.5 * first["heatmap"] and last["size"] < 0.5 * first["size"]


def test_joint_model_trains_on_mixed_batches_and_resumes(tmp_path: Path) -> None:
    model = _tiny("fcn8s_joint", output_stride=8)
    ds = OnlyOneKind(SyntheticStreets(8, size=SIZE, transforms=eval_transforms(model.preprocessing)))
    val = torch.utils.data.Subset(ds, [1, 3])  # box-only samples
    history = train_detection(model, ds, val, out_dir=tmp_path, epochs=6, batch_size=4, lr=5e-3, warmup_steps=2,
                              amp=True, progress=False, meta={"classes": ["car"]})
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5, 6]
    for r in history:  # every batch mixed both kinds, so both losses were computed every epoch
        assert r["loss_seg"] > 0 and r["loss_det"] > 0
        assert r["loss_total"] == pytest.approx(r["loss_seg"] + r["loss_det"], rel=1e-5)
        assert 0.0 <= r["val_map"] <= 1.0
    assert history[-1]["loss_seg"] < history[0]["loss_seg"] and history[-1]["loss_det"] < history[0]["loss_det"]
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "history.json").is_file()

    # last.pt rebuilds the model by itself and scores the same as the trained one
    loaded = load_model(tmp_path / "last.pt")
    assert loaded.meta["classes"] == ["car"] and loaded.config == model.config
    loader = make_loader(val, loaded, batch_size=2, shuffle=False)
    assert evaluate_detection(loaded, loader, progress=False)["map"] == pytest.approx(history[-1]["val_map"])

    # resume: a fresh model continues at epoch 7 from last.pt's weights, optimiser and schedule
    again = train_detection(_tiny("fcn8s_joint", output_stride=8), ds, None, out_dir=tmp_path, epochs=7,
                            batch_size=4, lr=5e-3, warmup_steps=2, progress=False)
    assert [r["epoch"] for r in again] == list(range(1, 8))
    assert [r["loss_total"] for r in again[:6]] == [r["loss_total"] for r in history]  # kept, not re-run

    # a time budget already spent stops training before any further step
    spent = train_detection(_tiny("fcn8s_joint", output_stride=8), ds, None, out_dir=tmp_path, epochs=20,
                            batch_size=4, time_budget=1e-3, progress=False)
    assert len(spent) == 7


def test_resume_refuses_a_different_model(tmp_path: Path) -> None:
    ds = SyntheticStreets(2, size=SIZE, transforms=eval_transforms(_tiny().preprocessing))
    train_detection(_tiny(output_stride=8), ds, None, out_dir=tmp_path, epochs=1, batch_size=2, progress=False)
    with pytest.raises(ValueError, match="checkpoint is for"):
        train_detection(_tiny(output_stride=4), ds, None, out_dir=tmp_path, epochs=2, batch_size=2, progress=False)


def test_raccoon_boxes_survive_targets_and_decoding_with_map_one() -> None:
    """Real VOC-XML boxes, resized like training, through render -> decode -> COCO mAP."""
    from fcnkit.data.voc_xml import VOCDetection

    root = data_dir("raccoon")
    model = _tiny()
    tf = v2.Compose([v2.Resize(size=None, max_size=160), eval_transforms(model.preprocessing)])
    val = VOCDetection(root, "val", tf)
    assert len(val) == 32 and val.classes == ["raccoon"]
    metric = DetectionMAP()
    n_boxes = 0
    for images, t in make_loader(val, model, batch_size=8, shuffle=False):
        n_boxes += sum(len(b) for b in t["boxes"])
        perfect = {"heatmap": torch.logit(t["heatmap"].clamp(1e-6, 1 - 1e-6)), "size": t["size"],
                   "offset": t["offset"]}
        preds = decode(perfect, stride=4, threshold=0.5, image_sizes=t["image_size"])
        metric.update(preds, [{"boxes": b, "labels": lab} for b, lab in zip(t["boxes"], t["labels"])])
    stats = metric.compute()
    assert n_boxes == 34  # the val split's boxes (173 in all, 139 in train)
    assert stats["map"] == pytest.approx(1.0) and stats["map_50"] == pytest.approx(1.0)


def test_cli_train_and_eval_route_detection_models(tmp_path: Path, capsys) -> None:
    """``fcnkit train --set model=fcn8s-det`` runs the detection loop; ``fcnkit eval`` on
    its checkpoint prints COCO numbers and writes metrics.json + detections.png."""
    import json

    from test_data_fixtures import write_voc_xml

    from fcnkit.cli import main

    write_voc_xml(tmp_path / "voc", n=6, size=(40, 48))
    out = tmp_path / "run"
    sets = ["model=fcn8s-det", "encoder=mobilenet_v3_large", "width=0.25", f"data=voc_xml:{tmp_path / 'voc'}",
            "epochs=2", "batch_size=2", "workers=0", "progress=false", "optimizer=adamw", "schedule=cosine",
            "lr=0.001", f"out_dir={out}"]
    assert main(["train", *[a for s in sets for a in ("--set", s)]]) == 0
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2] and "val_map_50" in history[0]
    assert load_model(out / "last.pt").meta["classes"] == ["cat", "dog"]
    capsys.readouterr()
    assert main(["eval", str(out / "best.pt"), "--data", f"voc_xml:{tmp_path / 'voc'}", "--out",
                 str(tmp_path / "eval"), "--workers", "0"]) == 0
    assert "mAP@[.5:.95]" in capsys.readouterr().out
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["images"] == 1 and 0.0 <= report["map"] <= 1.0 and report["classes"] == ["cat", "dog"]
    assert report["nms_iou"] == 0.5  # the default decoding
    assert (tmp_path / "eval" / "detections.png").stat().st_size > 0
    assert main(["eval", str(out / "best.pt"), "--data", f"voc_xml:{tmp_path / 'voc'}", "--out",
                 str(tmp_path / "eval-paper"), "--workers", "0", "--nms-iou", "0"]) == 0
    assert json.loads((tmp_path / "eval-paper" / "metrics.json").read_text())["nms_iou"] is None


def test_resumed_training_equals_uninterrupted_training(tmp_path: Path) -> None:
    ds = SyntheticStreets(4, size=SIZE, transforms=eval_transforms(_tiny().preprocessing))
    kw = {"batch_size": 2, "lr": 5e-3, "warmup_steps": 1, "progress": False}
    torch.manual_seed(0)
    straight = _tiny(output_stride=8)
    train_detection(straight, ds, None, out_dir=tmp_path / "a", epochs=3, **kw)
    torch.manual_seed(0)
    train_detection(_tiny(output_stride=8), ds, None, out_dir=tmp_path / "b", epochs=3, pause_after=1, **kw)
    resumed = _tiny(output_stride=8)
    train_detection(resumed, ds, None, out_dir=tmp_path / "b", epochs=3, **kw)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_detection_checkpoints_are_recognised_in_either_file_format(tmp_path: Path, suffix: str) -> None:
    from fcnkit.detection.evaluate import is_detection_checkpoint
    from fcnkit.models import create_model
    from fcnkit.models.saved import save_model

    det, seg = tmp_path / f"det{suffix}", tmp_path / f"seg{suffix}"
    save_model(_tiny(), det)
    save_model(create_model("fcn8s", num_classes=3, encoder="mobilenet_v3_large", width=0.25), seg)
    (tmp_path / f"junk{suffix}").write_bytes(b"not a model")
    assert is_detection_checkpoint(det)
    assert not is_detection_checkpoint(seg) and not is_detection_checkpoint(tmp_path / f"junk{suffix}")
