"""`fcnkit demo --quick` runs every step and writes the report, PNG and metrics it promises."""

import json

import numpy as np
from PIL import Image

from fcnkit.cli import main
from fcnkit.data.synthetic import SyntheticStreets


def test_quick_demo_writes_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skip connections:" in printed and "ONNX Runtime int8" in printed
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
