"""Detection and joint models in the one trainer: batching with rendered targets,
overfitting, mixed seg + det data, exact resume, --stop-after, DDP, and the real
raccoon / CamVid data through the chain."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
import torch
from conftest import data_dir, torchrun_two_cpu_ranks
from test_data_fixtures import write_camvid, write_coco, write_voc_xml
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from fcnkit.config import TrainConfig
from fcnkit.data import build_dataset
from fcnkit.data.synthetic import SyntheticStreets
from fcnkit.data.transforms import eval_transforms
from fcnkit.detection import DetectionCollate, decode, detection_loss
from fcnkit.engine import evaluate, train
from fcnkit.engine.tasks import DETECTION, JOINT, SEGMENTATION, task_of
from fcnkit.heads import BOXES, SEG
from fcnkit.metrics.detection import DetectionMAP
from fcnkit.models import create_model
from fcnkit.models.saved import load_model, read_record, save_model

SIZE = (64, 96)
TINY = {"encoder": "mobilenet_v3_large", "width": 0.25}


def _tiny(name: str = "fcn8s_det", **kw):
    kw = {"det_classes": 1, **kw} if name == "fcn8s_det" else {"num_classes": 7, "det_classes": 1, **kw}
    return create_model(name, **TINY, **kw)


class OnlyOneKind(torch.utils.data.Dataset):
    """Street scenes where even samples keep only their mask and odd ones only their boxes."""

    classes, box_classes, heads, ignore_index = SyntheticStreets.classes, ["car"], frozenset({SEG, BOXES}), 255

    def __init__(self, base: torch.utils.data.Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        image, target = self.base[i]
        keep = ("mask",) if i % 2 == 0 else ("boxes", "labels")
        return image, {k: v for k, v in target.items() if k in keep}


def _cfg(out: Path, **kw) -> TrainConfig:
    base = dict(model="fcn8s_det", **TINY, workers=0, progress=False, batch_size=2, optimizer="adamw", lr=5e-3,
                schedule="cosine", warmup_iters=1, epochs=3, out_dir=str(out), amp="off")
    return TrainConfig(**{**base, **kw})


def test_models_declare_their_task_and_class_counts() -> None:
    det, joint = _tiny(), _tiny("fcn8s_joint")
    seg = create_model("fcn8s", num_classes=3, **TINY)
    assert (det.spec.heads, joint.spec.heads, seg.spec.heads) == ({BOXES}, {SEG, BOXES}, {SEG})
    assert (task_of(det), task_of(joint), task_of(seg)) == (DETECTION, JOINT, SEGMENTATION)
    assert det.spec.det_classes == 1 and det.spec.num_classes is None  # no second meaning of num_classes
    assert joint.spec.num_classes == 7 and joint.spec.det_classes == 1


def test_collate_mixed_batch_flags_and_targets() -> None:
    model = _tiny("fcn8s_joint")
    ds = OnlyOneKind(SyntheticStreets(4, size=SIZE, transforms=eval_transforms(model.spec.preprocessing)))
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
    ds = SyntheticStreets(2, size=SIZE, transforms=eval_transforms(model.spec.preprocessing))
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


def test_joint_task_loss_uses_each_label_only_where_it_exists() -> None:
    model = _tiny("fcn8s_joint", output_stride=8)
    ds = OnlyOneKind(SyntheticStreets(4, size=SIZE, transforms=eval_transforms(model.spec.preprocessing)))
    collate = JOINT.collate(model, 255)
    ce = torch.nn.CrossEntropyLoss(ignore_index=255)
    out = model(collate([ds[0], ds[2]])[0])  # masks only
    parts = {k: v.detach() for k, v in JOINT.loss(out, collate([ds[0], ds[2]])[1], ce).items()}
    assert set(parts) == {"seg", "total"} and float(parts["total"]) == pytest.approx(float(parts["seg"]))
    images, t = collate([ds[1], ds[3]])  # boxes only
    parts = JOINT.loss(model(images), t, ce)
    assert "seg" not in parts and float(parts["total"].detach()) == pytest.approx(float(parts["det"].detach()))
    weighted = JOINT.loss(model(images), t, ce, det_weight=0.1)  # the recipe's det_loss_weight
    assert float(weighted["total"].detach()) == pytest.approx(0.1 * float(parts["det"].detach()), rel=1e-5)
    parts["total"].backward()  # every parameter is in the graph, the unlabelled head with zero gradient
    seg_grads = [p.grad for n, p in model.named_parameters() if n.startswith("seg_decoder") and p.requires_grad]
    assert seg_grads and all(g is not None and g.abs().sum() == 0 for g in seg_grads)


def test_joint_model_trains_on_mixed_batches_and_scores_both(tmp_path: Path) -> None:
    model = _tiny("fcn8s_joint", output_stride=8)
    tf = eval_transforms(model.spec.preprocessing)
    ds = OnlyOneKind(SyntheticStreets(8, size=SIZE, transforms=tf))
    val = OnlyOneKind(SyntheticStreets(4, size=SIZE, seed=50, transforms=tf))
    result = train(_cfg(tmp_path, model="fcn8s_joint", batch_size=4, epochs=6), train_set=ds, val_set=val)
    rows = [json.loads(r) for r in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    m = result["metrics"]  # mean IU on the masked half, mAP on the boxed half, their mean picks best.pt
    assert 0 <= m["mean_iu"] <= 1 and 0 <= m["map"] <= 1
    assert m["score"] == pytest.approx((m["mean_iu"] + m["map"]) / 2)
    assert m["pixels"] == 2 * SIZE[0] * SIZE[1] - int(sum((val[i][1]["mask"] == 255).sum() for i in (0, 2)))
    assert result["best_key"] == "score"
    best = read_record(tmp_path / "best.pt")
    assert best["spec"]["box_classes"] == ["car"] and best["spec"]["classes"] == SyntheticStreets.classes
    loaded = load_model(tmp_path / "last.pt")
    assert loaded.spec.heads == {SEG, BOXES} and loaded.spec == result["model"].spec
    loader = DataLoader(val, batch_size=2, collate_fn=JOINT.collate(loaded, 255))
    again = evaluate(loaded, loader).metrics  # last.pt rebuilds itself and scores like the trainer
    assert again["map"] == pytest.approx(m["map"]) and again["mean_iu"] == pytest.approx(m["mean_iu"])


def test_detector_resume_is_bit_identical_and_stop_after_pauses(tmp_path: Path) -> None:
    ds = SyntheticStreets(4, size=SIZE, transforms=eval_transforms(_tiny().spec.preprocessing))
    fixed = dict(output_stride=8, channels_last=False)  # two runs compared bit for bit: no layout on trial
    straight = train(_cfg(tmp_path / "a", **fixed), train_set=ds)
    paused = train(_cfg(tmp_path / "b", **fixed), train_set=ds, stop_after=3)
    assert paused["status"] == "paused" and paused["iteration"] == 3
    assert read_record(tmp_path / "b" / "last.pt")["progress"]["iteration"] == 3
    resumed = train(_cfg(tmp_path / "b", **fixed), train_set=ds, resume=True)
    assert resumed["status"] == "finished" and resumed["iteration"] == straight["iteration"] == 6
    for (name, a), b in zip(straight["model"].state_dict().items(), resumed["model"].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_resume_refuses_a_different_model(tmp_path: Path) -> None:
    ds = SyntheticStreets(2, size=SIZE, transforms=eval_transforms(_tiny().spec.preprocessing))
    train(_cfg(tmp_path, output_stride=8, epochs=1), train_set=ds)
    with pytest.raises(ValueError, match="do not fit the model this config builds"):
        train(_cfg(tmp_path, model="fcn8s_joint", epochs=2), train_set=OnlyOneKind(ds), resume=True)


def test_cli_train_stop_after_resume_and_eval_on_a_detector(tmp_path: Path, capsys) -> None:
    from fcnkit.cli import main

    write_voc_xml(tmp_path / "voc", n=6, size=(40, 48))
    out = tmp_path / "run"
    sets = ["model=fcn8s-det", "encoder=mobilenet_v3_large", "width=0.25", f"data=voc_xml:{tmp_path / 'voc'}",
            "epochs=2", "batch_size=2", "workers=0", "progress=false", "optimizer=adamw", "schedule=cosine",
            "lr=0.001", f"out_dir={out}", "max_size=40", "mosaic=0.5", "crop_size=[32,32]"]  # mosaic: tiles, crops
    args = ["train", *[a for s in sets for a in ("--set", s)]]
    assert main([*args, "--stop-after", "1"]) == 0
    assert read_record(out / "last.pt")["progress"]["iteration"] == 1
    assert main([*args, "--resume"]) == 0
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and "val_map_50" in rows[0] and "val_mean_iu" not in rows[0]
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")  # the CSV's columns are the rows' keys
    assert {"val_map", "val_map_50", "val_mar_100"} <= set(header) and "val_mean_iu" not in header
    last = load_model(out / "last.pt")
    assert last.spec.label_names == last.spec.box_classes == ("cat", "dog") and last.meta["max_size"] == 40
    capsys.readouterr()
    assert main(["eval", str(out / "best.pt"), "--data", f"voc_xml:{tmp_path / 'voc'}", "--out",
                 str(tmp_path / "eval"), "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert "mAP@[.5:.95]" in printed and "mean IU" not in printed
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["images"] == 1 and 0.0 <= report["map"] <= 1.0 and report["box_classes"] == ["cat", "dog"]
    assert report["task"] == "detection" and report["nms_iou"] == 0.5 and report["max_size"] == 40
    key = np.asarray(Image.open(tmp_path / "eval" / "detections.png").convert("RGB"))[:22]  # 26.9: a key on top
    colours = {tuple(c) for c in key.reshape(-1, 3)}
    assert (0, 255, 0) in colours and (255, 0, 0) in colours  # which colour is the ground truth, which the model
    assert main(["eval", str(out / "best.pt"), "--data", f"voc_xml:{tmp_path / 'voc'}", "--out",
                 str(tmp_path / "eval-paper"), "--workers", "0", "--nms-iou", "0"]) == 0
    assert json.loads((tmp_path / "eval-paper" / "metrics.json").read_text())["nms_iou"] is None


def test_joint_model_on_a_list_of_datasets_and_its_eval_on_each(tmp_path: Path, capsys) -> None:
    """data: [camvid, voc_xml] trains the joint model; eval reports mean IU on the masks,
    mAP on the boxes, and both on the mixture, without crashing on either alone."""
    from fcnkit.cli import main

    write_camvid(tmp_path / "camvid", {"train": 4, "val": 2}, size=(40, 48))
    write_voc_xml(tmp_path / "voc", n=6, size=(40, 48))
    camvid, voc = f"camvid:{tmp_path / 'camvid'}", f"voc_xml:{tmp_path / 'voc'}"
    out = tmp_path / "run"
    sets = ["model=fcn8s-joint", "encoder=mobilenet_v3_large", "width=0.25", f"data=[{camvid}, {voc}]",
            "epochs=1", "batch_size=3", "workers=0", "progress=false", "optimizer=adamw", f"out_dir={out}"]
    assert main(["train", *[a for s in sets for a in ("--set", s)]]) == 0
    row = json.loads((out / "metrics.jsonl").read_text())
    assert {"val_mean_iu", "val_map", "val_score"} <= set(row)
    model = load_model(out / "last.pt")
    assert model.spec.num_classes == 11 and model.spec.det_classes == 2 and model.spec.box_classes == ("cat", "dog")
    reports = {}
    for name, data in {"seg": [camvid], "det": [voc], "both": [camvid, voc]}.items():
        assert main(["eval", str(out / "last.pt"), "--data", *data, "--out", str(tmp_path / name),
                     "--workers", "0"]) == 0
        reports[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    assert reports["seg"]["images"] == 2 and reports["seg"]["map"] is None and reports["seg"]["mean_iu"] >= 0
    assert reports["det"]["images"] == 1 and "mean_iu" not in reports["det"] and reports["det"]["map"] >= 0
    assert reports["both"]["mean_iu"] == pytest.approx(reports["seg"]["mean_iu"])
    assert reports["both"]["map"] == pytest.approx(reports["det"]["map"])
    assert (tmp_path / "seg" / "confusion.png").is_file() and (tmp_path / "det" / "detections.png").is_file()
    assert (tmp_path / "both" / "detections.png").is_file() and not (tmp_path / "seg" / "detections.png").exists()
    from fcnkit.inference.evaluate import _boxed_indices  # the picture skips the mask-only part of a mixture

    assert _boxed_indices(build_dataset([camvid, voc], "val")) == [2]  # 2 CamVid frames, then the VOC image
    assert not (tmp_path / "det" / "confusion.png").exists()
    capsys.readouterr()
    assert main(["train", "--set", "model=fcn8s-joint", "--set", f"data={voc}", "--set", "workers=0",
                 "--set", f"out_dir={tmp_path / 'bad'}", "--set", "encoder=mobilenet_v3_large", "--set",
                 "width=0.25"]) == 2
    assert "needs data with masks as well as boxes" in capsys.readouterr().err


def test_one_coco_dataset_feeds_both_heads_of_a_joint_model(tmp_path: Path) -> None:
    """coco_joint: every sample carries its boxes and their polygons as a mask, so one
    dataset trains the segmentation and the detection head and eval scores both."""
    pytest.importorskip("pycocotools")
    from fcnkit.cli import main

    write_coco(tmp_path / "coco", {"train": 4, "val": 2})
    data, out = f"coco_joint:{tmp_path / 'coco'}", tmp_path / "run"
    sets = ["model=fcn8s-joint", "encoder=mobilenet_v3_large", "width=0.25", f"data={data}", "epochs=1",
            "batch_size=2", "workers=0", "progress=false", "optimizer=adamw", f"out_dir={out}"]
    assert main(["train", *[a for s in sets for a in ("--set", s)]]) == 0
    row = json.loads((out / "metrics.jsonl").read_text())
    assert {"val_mean_iu", "val_map", "val_score"} <= set(row)
    model = load_model(out / "last.pt")
    assert model.spec.num_classes == 3 and model.spec.det_classes == 2  # categories in id order: person (3), car (7)
    assert model.spec.classes == ("background", "person", "car") and model.spec.box_classes == ("person", "car")
    # the collated batch carries both labels for every sample: both loss terms are live
    ds = build_dataset(data, "train", eval_transforms(model.spec.preprocessing))
    _, targets = DetectionCollate(num_classes=2, stride=model.spec.output_stride)([ds[0], ds[1]])
    assert targets["has_mask"].tolist() == [True, True] and targets["has_boxes"].tolist() == [True, True]
    assert set(targets["mask"].unique().tolist()) == {0, 1, 2}  # image 1 has a car and a person
    assert main(["eval", str(out / "last.pt"), "--data", data, "--out", str(tmp_path / "eval"), "--workers", "0"]) == 0
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["images"] == 2 and report["mean_iu"] >= 0 and report["map"] >= 0 and len(report["class_iu"]) == 3


def test_mixed_real_data_camvid_masks_and_raccoon_boxes() -> None:
    camvid, raccoon = data_dir("camvid"), data_dir("raccoon")
    ds = build_dataset([f"camvid:{camvid}", f"voc_xml:{raccoon}"], "val")
    assert ds.heads == {SEG, BOXES} and len(ds) == 101 + 32
    assert ds.classes[:3] == ["Sky", "Building", "Pole"] and len(ds.classes) == 11 and ds.box_classes == ["raccoon"]
    _, first = ds[0]
    _, last = ds[len(ds) - 1]
    assert set(first) >= {"mask"} and "boxes" not in first
    assert "mask" not in last and len(last["boxes"]) >= 1 and last["labels"].tolist() == [0] * len(last["boxes"])


def test_raccoon_boxes_survive_targets_and_decoding_with_map_one() -> None:
    """Real VOC-XML boxes, resized like training, through render -> decode -> COCO mAP."""
    from fcnkit.data.voc_xml import VOCDetection

    root = data_dir("raccoon")
    model = _tiny()
    tf = v2.Compose([v2.Resize(size=None, max_size=160), eval_transforms(model.spec.preprocessing)])
    val = VOCDetection(root, "val", tf)
    assert len(val) == 32 and val.classes == ["raccoon"]
    metric = DetectionMAP()
    n_boxes = 0
    for images, t in DataLoader(val, batch_size=8, collate_fn=DETECTION.collate(model, 255)):
        n_boxes += sum(len(b) for b in t["boxes"])
        perfect = {"heatmap": torch.logit(t["heatmap"].clamp(1e-6, 1 - 1e-6)), "size": t["size"],
                   "offset": t["offset"]}
        preds = decode(perfect, stride=4, threshold=0.5, image_sizes=t["image_size"])
        metric.update(preds, [{"boxes": b, "labels": lab} for b, lab in zip(t["boxes"], t["labels"])])
    stats = metric.compute()
    assert n_boxes == 34  # the val split's boxes (173 in all, 139 in train)
    assert stats["map"] == pytest.approx(1.0) and stats["map_50"] == pytest.approx(1.0)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_saved_models_rebuild_with_their_task_in_either_file_format(tmp_path: Path, suffix: str) -> None:
    det, seg = tmp_path / f"det{suffix}", tmp_path / f"seg{suffix}"
    save_model(_tiny(), det)
    save_model(create_model("fcn8s", num_classes=3, **TINY), seg)
    assert load_model(det).spec.heads == {BOXES} and load_model(seg).spec.heads == {SEG}


def test_old_detector_files_with_num_classes_still_load(tmp_path: Path) -> None:
    rec = {"format": "fcnkit-model/1", "meta": {}, "model": _tiny().state_dict(),
           "config": {**_tiny().spec.builder_config, "num_classes": 1}}
    del rec["config"]["det_classes"]
    torch.save(rec, tmp_path / "old.pt")
    assert load_model(tmp_path / "old.pt").spec.det_classes == 1
    # the old trainer wrote a detector's class names twice, as classes and as box_classes
    rec["meta"] = {"classes": ["raccoon"], "box_classes": ["raccoon"]}
    torch.save(rec, tmp_path / "old_named.pt")
    spec = load_model(tmp_path / "old_named.pt").spec
    assert spec.box_classes == ("raccoon",) and spec.classes == () and spec.label_names == ("raccoon",)
    rec["meta"] = {"classes": ["cat"], "box_classes": ["raccoon"]}
    torch.save(rec, tmp_path / "old_bad.pt")
    with pytest.raises(ValueError, match="differ"):
        load_model(tmp_path / "old_bad.pt")


DDP_SCRIPT = textwrap.dedent('''
    import json, os, sys
    import torch
    from fcnkit.config import TrainConfig
    from fcnkit.data import eval_transforms, train_transforms
    from fcnkit.data.synthetic import SyntheticStreets
    from fcnkit.engine import train
    from fcnkit.models import IMAGENET

    out = sys.argv[1]
    tr = SyntheticStreets(4, size=(64, 64), seed=0, transforms=train_transforms(IMAGENET, crop_size=(64, 64)))
    va = SyntheticStreets(3, size=(64, 64), seed=50, transforms=eval_transforms(IMAGENET))  # odd: uneven shards
    cfg = TrainConfig(model="fcn8s_det", encoder="mobilenet_v3_large", width=0.25, workers=0, progress=False,
                      epochs=2, optimizer="adamw", lr=1e-3, amp="off", out_dir=out)
    result = train(cfg, train_set=tr, val_set=va)
    rank = int(os.environ["RANK"])
    torch.save(result.pop("model").state_dict(), f"{out}/rank{rank}.pt")
    json.dump({k: v for k, v in result["metrics"].items()}, open(f"{out}/metrics{rank}.json", "w"))
''')


def test_two_cpu_processes_train_a_detector_in_lockstep(tmp_path: Path) -> None:
    out = torchrun_two_cpu_ranks(DDP_SCRIPT, tmp_path)
    w0, w1 = torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")
    assert all(torch.equal(w0[k], w1[k]) for k in w0)  # one model, not two copies trained side by side
    last = read_record(out / "last.pt")
    assert last["progress"]["iteration"] == 4 and len(last["rng"]) == 2  # 4 images / 2 ranks / batch 1 x 2 epochs
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2  # one run folder, written by rank 0
    m0, m1 = (json.loads((out / f"metrics{r}.json").read_text()) for r in (0, 1))
    assert m0 == m1 and 0 <= m0["map"] <= 1  # detections gathered from both shards: ranks agree
    model = load_model(out / "last.pt")
    va = SyntheticStreets(3, size=(64, 64), seed=50, transforms=eval_transforms(model.spec.preprocessing))
    single = evaluate(model, DataLoader(va, batch_size=1, collate_fn=DETECTION.collate(model, 255))).metrics
    assert single["map"] == pytest.approx(m0["map"], abs=1e-12)
