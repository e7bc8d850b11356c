"""`fcnkit demo --quick` runs every step and writes the report, PNG and metrics it promises."""

import json
import re

import numpy as np
from PIL import Image

from fcnkit.cli import main
from fcnkit.data.synthetic import SyntheticStreets


def test_quick_demo_writes_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skip connections:" in printed and "ONNX Runtime int8" in printed
    assert re.findall(r"^== (\d+)\. ", printed, re.M) == ["1", "2", "3", "4", "5", "6"]  # each step its number
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["segmentation"]) == {"fcn32s", "fcn8s"}
    for m in metrics["segmentation"].values():
        assert 0 <= m["mean_iu"] <= 100 and m["iterations"] == 6
        assert set(m["per_class_iu"]) == set(SyntheticStreets.classes)
    assert [r["variant"] for r in metrics["ladder"]] == ["PyTorch eager fp32", "PyTorch eager bf16",
                                                         "ONNX Runtime fp32", "ONNX Runtime int8"]
    assert metrics["ladder"][0]["agreement"] == 100.0 and metrics["ladder"][2]["agreement"] > 99.0
    assert metrics["blocks"]["max_abs_diff_1x1"] < 1e-5 and metrics["blocks"]["transpose_formula_ok"]
    assert 0 <= metrics["detection"]["map_50"] <= 100
    grid = np.asarray(Image.open(out / "predictions.png"))
    assert grid.shape == (4 * (64 + 4), 5 * (96 + 4), 3)  # 4 scenes x (input, truth, 32s, 8s, detections)
    report = (out / "report.md").read_text()
    assert "![predictions](predictions.png)" in report and "ONNX Runtime fp32" in report


def test_demo_runs_again_in_the_same_folder(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    first = json.loads((out / "metrics.json").read_text())
    assert main(["demo", "--quick", "--out", str(out)]) == 0  # `make demo` twice must work
    assert "replacing the previous demo run" in capsys.readouterr().out
    again = json.loads((out / "metrics.json").read_text())
    assert again["segmentation"]["fcn8s"]["iterations"] == first["segmentation"]["fcn8s"]["iterations"] == 6


def test_report_numbers_its_sections_in_order():
    from fcnkit.demo.pipeline import _report

    seg = {name: {"mean_iu": 50.0, "pixel_acc": 80.0, "mean_acc": 60.0, "fw_iu": 70.0, "train_seconds": 1.0}
           for name in ("fcn32s", "fcn8s")}
    ladder = [{"variant": "PyTorch eager fp32", "ms": 1.0, "speedup": 1.0, "mean_iu": 50.0, "delta_iu": 0.0,
               "agreement": 100.0}]
    full = {"data": "generated street scenes", "seconds": 1.0, "segmentation": seg, "ladder": ladder,
            "blocks": {"max_abs_diff_1x1": 1e-7, "transpose_formula_ok": True},
            "detection": {"map": 10.0, "map_50": 20.0, "map_75": 5.0}}
    on_data = {k: v for k, v in full.items() if k not in ("blocks", "detection")}  # --data: two steps fewer
    for results, titles in [(full, ["Building blocks", "Skip connections pay", "Detection",
                                    "Predictions on held-out images", "Inference optimisation"]),
                            (on_data, ["Skip connections pay", "Predictions on held-out images",
                                       "Inference optimisation"])]:
        headings = re.findall(r"^## (\d+)\. (.+)$", _report(results), re.M)
        assert headings == [(str(i), t) for i, t in enumerate(titles, 1)]
