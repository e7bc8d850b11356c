"""Evaluation: the loop (padding never counts), KITTI road path, report files, fcnkit eval."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision import tv_tensors

from fcnkit.data import pad_collate
from fcnkit.engine.evaluate import evaluate
from fcnkit.engine.report import write_report
from fcnkit.heads import SEG
from fcnkit.inference.evaluate import evaluate_checkpoint
from fcnkit.metrics import RoadMaxF, confusion_matrix
from fcnkit.models import create_model
from fcnkit.models.saved import save_model
from fcnkit.models.spec import ModelSpec, with_names

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


class ChannelsAsLogits(nn.Module):
    """Predicts class c where image channel c is largest: a model whose output we know."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.spec = ModelSpec(name="fcn8s", config={"num_classes": num_classes}, heads=frozenset({SEG}), pad_multiple=1)

    def forward(self, x):
        return {"seg": x * 10.0}


def _road_model() -> nn.Module:
    """A tiny two-class FCN whose classes are named as KITTI road's."""
    model = create_model("fcn8s", num_classes=2, width=1 / 16)
    model.spec = with_names(model.spec, ["not road", "road"])
    return model


def _samples(seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for h, w in ((5, 7), (6, 4), (3, 9)):
        image = torch.rand(3, h, w, generator=g)
        mask = torch.randint(0, 3, (h, w), generator=g)
        mask[0, 0] = 255
        out.append((tv_tensors.Image(image), {"mask": tv_tensors.Mask(mask)}))
    return out


def test_evaluate_equals_direct_confusion_matrix_and_ignores_padding():
    samples = _samples()
    loader = torch.utils.data.DataLoader(samples, batch_size=2, collate_fn=pad_collate)
    ev = evaluate(ChannelsAsLogits(3), loader)
    direct = sum(confusion_matrix(t["mask"], im.argmax(0), 3) for im, t in samples)
    assert torch.equal(ev.confusion.hist, direct)
    assert ev.metrics["pixels"] == 35 + 24 + 27 - 3  # padding (255) and the ignored corners excluded


def test_evaluate_road_class_gives_kitti_metrics_from_softmax_probabilities():
    samples = [(im[:2], {"mask": t["mask"].clamp(max=1).where(t["mask"] != 255, 255)}) for im, t in _samples(1)]
    loader = torch.utils.data.DataLoader(samples, batch_size=3, collate_fn=pad_collate)
    ev = evaluate(ChannelsAsLogits(2), loader, road_class=1)
    ref = RoadMaxF()
    for im, t in samples:
        ref.update((im * 10).softmax(0)[1], t["mask"].where(t["mask"] != 255, -1))
    assert ev.metrics["kitti"] == ref.compute()
    assert 0 < ev.metrics["kitti"]["max_f"] <= 1


def test_write_report_is_strict_json_with_plots(tmp_path):
    loader = torch.utils.data.DataLoader(_samples(), batch_size=1, collate_fn=pad_collate)
    ev = evaluate(ChannelsAsLogits(4), loader)  # class 3 never occurs: NaN IU
    report = write_report(ev, ["a", "b", "c", "d"], tmp_path, split="val")
    assert math.isnan(report["class_iu"][3])

    def no_nan(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    saved = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=no_nan)
    assert saved["class_iu"][3] is None and saved["class_iu_by_name"]["a"] == report["class_iu"][0]
    assert saved["confusion_matrix"] == ev.confusion.hist.tolist()
    assert Image.open(tmp_path / "confusion.png").size[0] > 200
    assert Image.open(tmp_path / "class_iou.png").size[0] > 200


def _kitti_folder(root, n=4):
    image_dir, gt_dir = root / "training" / "image_2", root / "training" / "gt_image_2"
    image_dir.mkdir(parents=True)
    gt_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (24, 40, 3), dtype=np.uint8)).save(image_dir / f"um_{i:06d}.png")
        gt = np.zeros((24, 40, 3), np.uint8)
        gt[:, :] = (255, 0, 0)  # not road
        gt[12:] = (255, 0, 255)  # road
        gt[:3] = 0  # outside the valid area
        Image.fromarray(gt).save(gt_dir / f"um_road_{i:06d}.png")


def test_eval_cli_on_kitti_road_reports_maxf(tmp_path, capsys):
    from fcnkit.cli import main

    _kitti_folder(tmp_path / "kitti")
    save_model(_road_model(), tmp_path / "m.pt", ignore_index=255)
    code = main(["eval", str(tmp_path / "m.pt"), "--data", f"kitti_road:{tmp_path / 'kitti'}", "--split", "all",
                 "--workers", "0", "--out", str(tmp_path / "rep")])
    assert code == 0
    report = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    # a fresh net scores exactly 0 everywhere (zero-initialised score layers): p(road) = 0.5 on every pixel,
    # so the best F is that of calling everything road: P = 12/21, R = 1
    assert report["kitti"]["max_f"] == pytest.approx(2 * (12 / 21) / (1 + 12 / 21))
    assert report["pixels"] == 4 * 21 * 40
    assert "KITTI road: MaxF" in capsys.readouterr().out


def test_eval_cli_prints_percent_and_writes_under_runs_not_beside_the_model(tmp_path, capsys, monkeypatch):
    """Printed scores are percent with one decimal (as the README and the demo print them);
    metrics.json keeps fractions and says so; the default report folder is ./runs/eval/N."""
    from fcnkit.cli import main

    _kitti_folder(tmp_path / "kitti", n=2)
    model_dir = tmp_path / "weights"
    model_dir.mkdir()
    save_model(_road_model(), model_dir / "m.pt", ignore_index=255)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("FCNKIT_PROGRESS_INTERVAL", "0")  # a progress line per batch, if any are shown
    for n in (1, 2):
        assert main(["eval", str(model_dir / "m.pt"), "--data", f"kitti_road:{tmp_path / 'kitti'}", "--split",
                     "all", "--workers", "0", "--quiet"]) == 0
        captured = capsys.readouterr()
        assert f"wrote runs/eval/{n}/metrics.json" in captured.out
        assert captured.err == ""  # --quiet: no progress lines
    assert sorted(p.name for p in model_dir.iterdir()) == ["m.pt"]  # nothing written beside the model
    report = json.loads((tmp_path / "work" / "runs" / "eval" / "1" / "metrics.json").read_text())
    assert report["units"].startswith("fractions in [0, 1]") and 0 < report["mean_iu"] < 1
    out = captured.out
    assert "scores in %" in out
    for label, key in [("pixel acc", "pixel_acc"), ("mean acc", "mean_acc"), ("mean IU", "mean_iu"),
                       ("fw IU", "fw_iu")]:
        assert re.search(rf"{label}\s+(\d+\.\d)\b", out).group(1) == f"{100 * report[key]:.1f}", label
    road = re.search(r"^\s+road\s+(\S+)\s+(\S+)$", out, re.M)
    assert road.groups() == (f"{100 * report['class_iu'][1]:.1f}", f"{100 * report['class_acc'][1]:.1f}")
    maxf = re.search(r"MaxF\s+(\S+)\s+AP\s+(\S+)", out)
    assert maxf.groups() == (f"{100 * report['kitti']['max_f']:.1f}", f"{100 * report['kitti']['ap']:.1f}")
    assert not re.search(r"\b0\.\d{4}\b", out.replace("threshold 0.", ""))  # no fractions printed

    assert main(["eval", str(model_dir / "m.pt"), "--data", f"kitti_road:{tmp_path / 'kitti'}", "--split",
                 "all", "--workers", "0", "--out", "rep"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and re.search(r"^eval: 1/2 batch \(50%\), [\d.,]+ batch/s", err, re.M), err


def test_eval_cli_rejects_a_model_with_the_wrong_number_of_classes(tmp_path, capsys):
    from fcnkit.cli import main

    _kitti_folder(tmp_path / "kitti", n=1)
    save_model(create_model("fcn8s", num_classes=3, width=1 / 16), tmp_path / "m.pt")
    assert main(["eval", str(tmp_path / "m.pt"), "--data", f"kitti_road:{tmp_path / 'kitti'}", "--split", "all",
                 "--workers", "0"]) == 2
    assert "predicts 3 classes but" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing.pt"), "--data", str(tmp_path / "kitti")]) == 2
    assert "missing.pt: no such model file" in capsys.readouterr().err


@pytest.mark.skipif(not (DATA / "camvid").is_dir(), reason=f"real CamVid not found at {DATA / 'camvid'}")
def test_evaluate_checkpoint_on_real_camvid_val(tmp_path, monkeypatch):
    save_model(create_model("fcn8s", num_classes=11, width=1 / 16), tmp_path / "m.pt")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    report = evaluate_checkpoint(tmp_path / "m.pt", f"camvid:{DATA / 'camvid'}", max_samples=2, workers=0,
                                 progress=False)
    assert report["images"] == 2 and len(report["class_iu"]) == 11
    assert 0 < report["pixels"] <= 2 * 360 * 480  # void (11) pixels are not scored
    # zero logits: argmax is class 0 (Sky) everywhere, so pixel acc = Sky's share of labelled pixels
    assert report["pixel_acc"] == pytest.approx(report["confusion_matrix"][0][0] / report["pixels"])
    assert sum(sum(r[1:]) for r in report["confusion_matrix"]) == 0
    assert report["report_dir"] == str(Path("runs") / "eval" / "1")  # under the working directory
    assert (tmp_path / "work" / "runs" / "eval" / "1" / "metrics.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "work"]  # nothing beside the model


def test_eval_tta_scores_the_predictors_tta_masks(tmp_path, capsys):
    """--tta through the one evaluator gives the confusion matrix of Predictor(tta=True)'s masks,
    and differs from the plain score (so the option is not ignored)."""
    from fcnkit.cli import main
    from fcnkit.data import build_dataset
    from fcnkit.inference.predictor import Predictor

    _kitti_folder(tmp_path / "kitti", n=3)
    torch.manual_seed(0)
    model = _road_model()
    for p in model.decoder.parameters():  # score layers start at zero: give the net an opinion
        nn.init.normal_(p, std=0.5)
    save_model(model, tmp_path / "m.pt", ignore_index=255)
    args = ["eval", str(tmp_path / "m.pt"), "--data", f"kitti_road:{tmp_path / 'kitti'}", "--split", "all",
            "--workers", "0", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "tta"), "--tta"]) == 0
    assert "TTA: scales 0.75,1,1.25 + flip" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    tta = json.loads((tmp_path / "tta" / "metrics.json").read_text())
    plain = json.loads((tmp_path / "plain" / "metrics.json").read_text())
    assert tta["tta"] == {"scales": [0.75, 1.0, 1.25], "flip": True} and "tta" not in plain

    predictor = Predictor(tmp_path / "m.pt", tta=True, progress=False)
    ds = build_dataset(f"kitti_road:{tmp_path / 'kitti'}", "all")
    hist = torch.zeros(2, 2, dtype=torch.int64)
    for i, (image_path, _) in enumerate(ds.files):
        pred = torch.from_numpy(np.asarray(predictor.predict(image_path).mask)).long()
        hist += confusion_matrix(ds[i][1]["mask"].as_subclass(torch.Tensor), pred, 2)
    assert tta["confusion_matrix"] == hist.tolist()
    assert tta["confusion_matrix"] != plain["confusion_matrix"]
    with pytest.raises(SystemExit):
        main([*args, "--scales", "0,1"])


def test_eval_cli_flicker_reports_predicted_and_true_flicker(tmp_path, capsys):
    from fcnkit.cli import main

    _kitti_folder(tmp_path / "kitti")
    save_model(_road_model(), tmp_path / "m.pt", ignore_index=255)
    assert main(["eval", str(tmp_path / "m.pt"), "--data", f"kitti_road:{tmp_path / 'kitti'}", "--split", "all",
                 "--workers", "0", "--out", str(tmp_path / "rep"), "--flicker"]) == 0
    report = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    # the ground truth is the same in every frame; a fresh net's all-zero scores pick class 0 everywhere
    assert report["gt_flicker"] == 0.0 and report["flicker"] == 0.0 and report["class_flicker"][1] is None
    assert "flicker (pixels changing class per frame): predicted 0.0, ground truth 0.0" in capsys.readouterr().out
