"""Bench: timing statistics, the table, and the bench command end to end on tiny models."""

from __future__ import annotations

import json

import pytest
import torch

from fcnkit.cli import main
from fcnkit.cli.bench import parse_model_arg
from fcnkit.export.bench import BenchRow, format_table, time_callable
from fcnkit.export.onnx_export import export_onnx
from fcnkit.models import create_model
from fcnkit.models.saved import save_model
from fcnkit.profile import count_flops


def test_time_callable_counts_calls_and_orders_stats():
    calls = []
    t = time_callable(lambda x: calls.append(x.shape), torch.zeros(4, 3, 2, 2), warmup=2, repeats=5)
    assert len(calls) == 7 and len(t.samples_ms) == 5 and t.batch == 4
    assert min(t.samples_ms) <= t.median_ms <= t.p90_ms <= max(t.samples_ms)
    assert t.images_per_s == pytest.approx(4000.0 / t.median_ms)
    with pytest.raises(ValueError):
        time_callable(lambda x: x, torch.zeros(1), repeats=0)


def test_row_derived_columns_and_table():
    row = BenchRow("m", "torch", "fp32", median_ms=200.0, p90_ms=250.0, images_per_s=5.0, gflop=10.0,
                   peak_gflops=100.0, mean_iu=50.0, mean_iu_change=-0.25)
    assert row.gflops == 50.0 and row.pct_peak == 50.0
    table = format_table([row])
    header, _, line = table.splitlines()
    assert header.split() == ["model", "backend", "prec", "ms", "med", "ms", "p90", "img/s", "GFLOP/s", "%", "peak",
                              "mIU", "dmIU"]
    assert line.split() == ["m", "torch", "fp32", "200.0", "250.0", "5.00", "50", "50", "50.0", "-0.25"]  # mIU: percent, one decimal


def test_parse_model_arg():
    assert parse_model_arg("a/m.xml@bf16,compile") == (__import__("pathlib").Path("a/m.xml"),
                                                       {"precision": "bf16", "compile": True})
    with pytest.raises(ValueError, match="int4"):
        parse_model_arg("m.pt@int4")


def test_bench_command(tmp_path, capsys):
    model = create_model("fcn8s", num_classes=3, width=1 / 16).eval()
    save_model(model, tmp_path / "m.pt")
    export_onnx(model, tmp_path / "m.onnx", verify=False)
    chart, out_json = tmp_path / "b.png", tmp_path / "b.json"
    code = main(["bench", str(tmp_path / "m.pt"), str(tmp_path / "m.onnx"), "--size", "32x48", "--threads", "1",
                 "--warmup", "1", "--repeats", "2", "--peak-gflops", "100", "--chart", str(chart),
                 "--json", str(out_json)])
    assert code == 0
    text = capsys.readouterr().out
    assert "m.pt " in text and "onnxruntime" in text and "1.00x" in text
    assert chart.stat().st_size > 1000 and chart.read_bytes()[:4] == b"\x89PNG"
    rows = json.loads(out_json.read_text())["rows"]
    flops, _ = count_flops(model, torch.zeros(1, 3, 32, 48))
    assert [r["backend"] for r in rows] == ["torch", "onnxruntime"]
    for r in rows:  # the same network: the same work per image, counted on the torch model
        assert r["gflop"] == pytest.approx(flops / 1e9)
        assert r["gflops"] == pytest.approx(r["gflop"] * 1000 / r["median_ms"])
        assert r["pct_peak"] == pytest.approx(r["gflops"])  # peak 100 GFLOP/s


def test_bench_missing_file(tmp_path, capsys):
    assert main(["bench", str(tmp_path / "nope.onnx"), "--peak-gflops", "1"]) == 2
    assert "nope.onnx" in capsys.readouterr().err


def test_torch_compile_path_matches_eager():
    from fcnkit.inference.runtime import TorchRuntime

    model = create_model("fcn8s", num_classes=3, width=1 / 16).eval()
    with torch.no_grad():
        model.decoder.score_fr.weight.normal_(0, 0.05)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = model(x)
    runtime = TorchRuntime(model, compile=True)
    assert runtime.compiled
    torch.testing.assert_close(runtime(x), expected, atol=1e-5, rtol=1e-5)
    torch._dynamo.reset()
