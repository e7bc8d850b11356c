"""Optimise: SVD factorisation, BN folding, int8 agreement on real images, and the accuracy budget."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fcnkit
from conftest import data_dir
from fcnkit.cli import main
from fcnkit.inference.runtime import export_meta, open_model
from fcnkit.models.fold import count_batchnorms, fold_batchnorm
from fcnkit.export.onnx_export import export_onnx
from fcnkit.export.openvino_export import onnx_to_openvino, save_ir
from fcnkit.export.quantize import quantize_onnx, quantize_openvino
from fcnkit.models.svd import apply_svd, factorized_conv, spectrum, svd_ranks
from fcnkit.export.torch_opt import save_optimized
from fcnkit.inference import Predictor
from fcnkit.models import create_model
from fcnkit.models.saved import load_model, save_model

INT8_MIN_AGREEMENT = 0.97  # pixels whose int8 class equals the fp32 class, on real CamVid images


def scored_model(num_classes: int = 11, **kwargs) -> torch.nn.Module:
    model = create_model("fcn8s", num_classes=num_classes, **{"width": 1 / 16, **kwargs}).eval()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "score" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


# --- truncated SVD ---------------------------------------------------------------------

@pytest.mark.parametrize("cin,cout,k", [(8, 24, 7), (3, 24, 1)])  # wide (Gram path) and tall (SVD path)
def test_svd_full_rank_is_exact_and_truncation_error_is_eckart_young(cin, cout, k):
    conv = torch.nn.Conv2d(cin, cout, k, padding=k // 2)
    spec = spectrum(conv)
    assert spec.full_rank == min(cout, cin * k * k)
    torch.testing.assert_close(spec.s, torch.linalg.svdvals(conv.weight.detach().double().reshape(cout, -1)))
    x = torch.randn(2, cin, 5, 6)
    full = factorized_conv(conv, spec.full_rank, spec)
    torch.testing.assert_close(full(x), conv(x), atol=1e-5, rtol=1e-5)
    r = 2
    low = factorized_conv(conv, r, spec)
    assert low[0].weight.shape == (r, cin, k, k) and low[1].weight.shape == (cout, r, 1, 1)
    w = conv.weight.detach().double().reshape(cout, -1)  # (out, in*k*k)
    with torch.no_grad():
        w_r = low[1].weight.double().reshape(cout, r) @ low[0].weight.double().reshape(r, -1)  # (out, in*k*k)
    # best rank-r approximation: squared Frobenius error = sum of the dropped squared singular values
    assert float(((w - w_r) ** 2).sum()) == pytest.approx(float((spec.s[r:] ** 2).sum()), rel=1e-4)


def test_energy_rank():
    spec = spectrum(torch.nn.Conv2d(4, 4, 1))
    spec.s = torch.tensor([3.0, 2.0, 1.0, 0.0], dtype=torch.float64)  # energies 9, 4, 1 of 14
    assert spec.energy_rank(9 / 14) == 1
    assert spec.energy_rank(0.65) == 2
    assert spec.energy_rank(13 / 14) == 2
    assert spec.energy_rank(1.0) == 3


def test_svd_model_saves_and_loads(tmp_path):
    model = scored_model()
    apply_svd(model, {"fc6": 8, "fc7": 16})
    assert svd_ranks(model) == {"fc6": 8, "fc7": 16}
    path = tmp_path / "svd.pt"
    save_optimized(model, path, {"svd": {"fc6": 8, "fc7": 16}, "precision": "fp32"})
    loaded = load_model(path)
    recipe = loaded.meta["optimization"]
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert recipe["svd"] == {"fc6": 8, "fc7": 16}
    # the same file opens wherever a model path is taken: fcnkit.load and Predictor (`fcnkit predict`)
    image = np.random.default_rng(0).integers(0, 256, (45, 61, 3), dtype=np.uint8)
    expected = Predictor(model, channels_last=False).predict(image).mask
    assert np.array_equal(Predictor(path, channels_last=False).predict(image).mask, expected)
    torch.testing.assert_close(fcnkit.load(path)(x), model(x))
    with pytest.raises(ValueError, match="fc6/fc7"):
        apply_svd(create_model("fcn8s", num_classes=3, encoder="mobilenet_v3_large", width=0.25), {"fc6": 4})


# --- BN folding ----------------------------------------------------------------------------

@pytest.mark.parametrize("encoder,width", [("resnet18", 1.0), ("mobilenet_v3_large", 0.25),
                                           ("efficientnet_lite0", 1.0)])  # timm's blocks: conv_pw, bn1, ...
def test_fold_batchnorm_keeps_outputs(encoder, width):
    model = scored_model(3, encoder=encoder, width=width)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    before = count_batchnorms(model)
    folded, n = fold_batchnorm(model, by_order=True)
    assert n == before > 0 and count_batchnorms(folded) == 0 and count_batchnorms(model) == before
    x = torch.randn(2, 3, 64, 72)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-4, rtol=1e-4)


def test_folded_bf16_model_predicts_from_its_file(tmp_path):
    model = scored_model(3, encoder="resnet18", width=1.0)
    folded, _ = fold_batchnorm(model)
    path = tmp_path / "folded.pt"
    save_optimized(folded, path, {"fold_bn": True, "precision": "bf16"})
    predictor = Predictor(path, channels_last=False)
    assert predictor.backend.bf16 and count_batchnorms(predictor.backend.module) == 0  # the recipe is honoured
    image = np.random.default_rng(1).integers(0, 256, (64, 72, 3), dtype=np.uint8)
    expected = Predictor(folded, channels_last=False, bf16=True).predict(image).mask
    assert np.array_equal(predictor.predict(image).mask, expected)


def test_a_model_file_runs_with_its_batchnorms_folded_and_a_given_module_is_left_alone(tmp_path):
    """Opened from a file, a torch model runs BN-folded (eager PyTorch does not fold by itself):
    the same scores; a module handed in by the caller keeps its BatchNorms."""
    model = scored_model(3, encoder="efficientnet_lite0", width=1.0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    before = count_batchnorms(model)
    save_model(model, tmp_path / "m.pt")
    runtime = open_model(tmp_path / "m.pt", device="cpu", channels_last=False)
    assert before > 0 and count_batchnorms(runtime.module) == 0
    x = torch.randn(1, 3, 64, 72)
    with torch.no_grad():
        torch.testing.assert_close(runtime(x)["seg"], model(x)["seg"], atol=1e-4, rtol=1e-4)
    assert count_batchnorms(open_model(model, device="cpu").module) == before
    # an optimised file runs as it was measured: unfolded if its recipe did not fold
    save_optimized(model, tmp_path / "unfolded.pt", {"backend": "torch", "precision": "fp32"})
    assert count_batchnorms(open_model(tmp_path / "unfolded.pt", device="cpu").module) == before


# --- int8 on real images -------------------------------------------------------------------

def test_int8_argmax_agreement_on_camvid(tmp_path):
    from fcnkit.data import build_dataset, eval_transforms

    root = data_dir("camvid")
    model = scored_model()
    val = build_dataset(f"camvid:{root}", "val", eval_transforms(model.spec.preprocessing))
    train = build_dataset(f"camvid:{root}", "train", eval_transforms(model.spec.preprocessing))
    calib = [train[i][0].as_subclass(torch.Tensor).unsqueeze(0) for i in range(2)]  # (1, 3, 360, 480)
    images = [val[i][0].as_subclass(torch.Tensor).unsqueeze(0) for i in range(2)]
    fp32 = tmp_path / "m.onnx"
    export_onnx(model, fp32, verify=False)
    quantize_onnx(fp32, tmp_path / "m8.onnx", calib)
    save_ir(quantize_openvino(onnx_to_openvino(fp32), calib), tmp_path / "m8.xml", export_meta(model, precision="int8"))
    ort8, ov8 = open_model(tmp_path / "m8.onnx"), open_model(tmp_path / "m8.xml")
    assert ov8.precision == "int8"
    for x in images:
        with torch.no_grad():
            ref = model(x)["seg"].argmax(1)
        for runtime in (ort8, ov8):
            agree = float((runtime(x)["seg"].argmax(1) == ref).float().mean())
            assert agree >= INT8_MIN_AGREEMENT, f"{runtime}: {agree:.4f}"
    # the quantised graph really is int8: ONNX Runtime's file holds int8 weights
    import onnx

    proto = onnx.load(str(tmp_path / "m8.onnx"))
    assert any(t.data_type == onnx.TensorProto.INT8 for t in proto.graph.initializer)


# --- the optimize command: accepted and refused -----------------------------------------------

def self_labelled_camvid(root, model, n: int = 3, size=(64, 96)):
    """A CamVid-layout folder whose labels are ``model``'s own predictions: its mean IU is 100."""
    g = torch.Generator().manual_seed(3)
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(n):
            coarse = torch.rand(1, 3, size[0] // 8, size[1] // 8, generator=g)
            img = torch.nn.functional.interpolate(coarse, size=size, mode="bilinear")[0]  # (3, H, W)
            arr = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(arr).save(root / split / f"{i}.png")
            x = model.spec.preprocessing(torch.from_numpy(arr).permute(2, 0, 1).float().div(255)).unsqueeze(0)
            with torch.no_grad():
                labels = model(x)["seg"].argmax(1)[0].numpy().astype(np.uint8)  # (H, W)
            Image.fromarray(labels).save(root / f"{split}annot" / f"{i}.png")
    return f"camvid:{root}"


def fc7_driven_model() -> torch.nn.Module:
    """Scores from fc7 only (skips zeroed), so a rank-1 fc6/fc7 visibly changes the predictions."""
    model = scored_model()
    with torch.no_grad():
        model.decoder.score_pool4.weight.zero_()
        model.decoder.score_pool3.weight.zero_()
        model.decoder.score_fr.weight.mul_(20)
    return model


def test_optimize_accepts_and_records(tmp_path, capsys):
    model = fc7_driven_model()
    save_model(model, tmp_path / "m.pt", classes=[f"c{i}" for i in range(11)], ignore_index=255)
    spec = self_labelled_camvid(tmp_path / "data", model)
    out = tmp_path / "m.int8.onnx"
    code = main(["optimize", str(tmp_path / "m.pt"), "--backend", "onnxruntime", "--precision", "int8",
                 "--val", spec, "--calib", spec, "--limit", "3", "--repeats", "1", "--warmup", "0",
                 "--max-drop", "100", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0 and out.is_file(), text
    assert "fp32 model: mean IU 100.0 on 3 val images" in text  # percent, one decimal
    runtime = open_model(out)
    results = runtime.meta["optimization"]["results"]
    assert runtime.precision == "int8" and results["fp32_mean_iu"] == pytest.approx(100.0)
    assert results["mean_iu"] == pytest.approx(100.0 + results["mean_iu_change"])
    assert results["median_ms"] > 0 and results["size_mb"] > 0 and 0 < results["agreement"] <= 1
    assert runtime.spec.classes[0] == "c0"


def test_optimize_refuses_a_drop_beyond_budget(tmp_path, capsys):
    model = fc7_driven_model()
    save_model(model, tmp_path / "m.pt")
    spec = self_labelled_camvid(tmp_path / "data", model)
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(["optimize", str(tmp_path / "m.pt"), "--backend", "torch", "--precision", "fp32",
                 "--val", spec, "--svd-rank", "1", "--max-drop", "1", "--repeats", "1", "--warmup", "0"])
    captured = capsys.readouterr()
    assert code == 3
    assert "refused torch-fp32-svd1" in captured.err and "(--max-drop 1); nothing written" in captured.err
    row = [line for line in captured.out.splitlines() if line.startswith("torch-fp32-svd1")][0]
    assert float(row.split()[-2]) < -1.0  # the table shows the drop that was refused
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no staging left behind


def test_optimize_rejects_unsupported_combinations(tmp_path, capsys):
    save_model(scored_model(), tmp_path / "m.pt")
    assert main(["optimize", str(tmp_path / "m.pt"), "--precision", "int8", "--val", str(tmp_path)]) == 2
    assert "--calib" in capsys.readouterr().err


def test_optimize_openvino_int8_with_accuracy_control(tmp_path, capsys):
    model = fc7_driven_model()
    save_model(model, tmp_path / "m.pt")
    spec = self_labelled_camvid(tmp_path / "data", model, n=2)
    out = tmp_path / "m.int8.xml"
    code = main(["optimize", str(tmp_path / "m.pt"), "--backend", "openvino", "--precision", "int8",
                 "--accuracy-control", "--val", spec, "--calib", spec, "--max-drop", "0.5", "--repeats", "1",
                 "--warmup", "0", "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    # 26.9: NNCF's INFO lines and progress bars are not ours to print
    assert "Statistics collection" not in printed.out + printed.err and "INFO:nncf" not in printed.out + printed.err
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["precision"] == "int8" and side["optimization"]["accuracy_control"] == 0.5
    assert side["optimization"]["results"]["mean_iu_change"] >= -0.5


def test_optimize_writes_an_int8_file_with_the_argmax_inside(tmp_path, capsys):
    """``--output labels``: the int8 IR gives uint8 classes, scored as the logits file is; the
    torch backend, which runs the model itself, refuses it."""
    model = fc7_driven_model()
    save_model(model, tmp_path / "m.pt")
    spec = self_labelled_camvid(tmp_path / "data", model, n=2)
    common = ["--val", spec, "--calib", spec, "--max-drop", "100", "--repeats", "1", "--warmup", "0"]
    for output in ("logits", "labels"):
        assert main(["optimize", str(tmp_path / "m.pt"), "--backend", "openvino", "--precision", "int8",
                     "--output", output, "--out", str(tmp_path / f"{output}.xml"), *common]) == 0
    capsys.readouterr()
    scores, labels = open_model(tmp_path / "logits.xml"), open_model(tmp_path / "labels.xml")
    assert labels.output_kind == "labels" and labels.meta["optimization"]["output"] == "labels"
    x = torch.randn(1, 3, 64, 96)
    classes = labels(x)["labels"]
    assert classes.dtype == torch.uint8 and classes.shape == (1, 64, 96)
    assert (classes.long() == scores(x)["seg"].argmax(1)).float().mean() >= 0.99  # same calibration, same int8
    results = [open_model(tmp_path / f"{o}.xml").meta["optimization"]["results"] for o in ("logits", "labels")]
    assert abs(results[0]["mean_iu"] - results[1]["mean_iu"]) < 1.0
    assert main(["optimize", str(tmp_path / "m.pt"), "--backend", "torch", "--output", "labels", *common]) == 2
    assert "the torch backend runs the model itself" in capsys.readouterr().err


def test_optimize_refuses_detection_models_with_a_reason(tmp_path, capsys):
    save_model(create_model("fcn8s_det", det_classes=1, encoder="mobilenet_v3_large", width=0.25), tmp_path / "d.pt")
    assert main(["optimize", str(tmp_path / "d.pt"), "--val", str(tmp_path)]) == 2
    assert "a detection model; optimize judges variants by mean IU" in capsys.readouterr().err


# --- --backend auto --precision auto: the fastest within the bound, by measurement -----------

def test_auto_picks_the_fastest_candidate_within_the_bound_by_measured_times(tmp_path, monkeypatch):
    """Fake timings decide: the fastest candidate is dropped for its accuracy, the next fastest within
    the bound is written, the slower ones are kept but not chosen, and the report says why."""
    from fcnkit.export import choose
    from fcnkit.export.bench import BenchRow, Timing

    model = fc7_driven_model()
    save_model(model, tmp_path / "m.pt", classes=[f"c{i}" for i in range(11)], ignore_index=255)
    spec = self_labelled_camvid(tmp_path / "data", model)
    fake = {"torch-fp32": (50.0, 0.0), "torch-bf16": (40.0, -0.1), "onnxruntime-fp32": (30.0, 0.0),
            "onnxruntime-int8": (10.0, -3.0), "openvino-fp32": (20.0, 0.0), "openvino-bf16": (25.0, -0.2),
            "openvino-int8": (15.0, -0.4)}

    fake["openvino-int8-subpixel"] = (12.0, -0.5)  # the upsampling rewritten: its own measurement
    fake["openvino-int8-subpixel-labels"] = (11.0, -0.5)  # the chosen one's argmax-inside twin: 8% faster

    def faked(name: str) -> tuple[float, float]:
        return fake.get(name, fake[name.removesuffix("-subpixel")])

    def measured(variant, samples, reference, *, timed=True, **kw):
        assert not timed  # candidates are timed side by side afterwards
        change = faked(variant.name)[1]
        return BenchRow(variant.name, variant.backend, variant.precision, float("nan"), float("nan"), float("nan"),
                        size_mb=1.0, mean_iu=reference.mean_iu + change, mean_iu_change=change, agreement=0.99)

    def timed_side_by_side(fns, x, **kw):
        return {name: Timing(faked(name)[0], faked(name)[0] * 1.1, 1) for name in fns}

    monkeypatch.setattr(choose, "measure", measured)
    monkeypatch.setattr(choose, "time_interleaved", timed_side_by_side)
    monkeypatch.setattr(choose, "cpu_has_fast_bf16", lambda: True)
    result = choose.optimize_auto(tmp_path / "m.pt", val=spec, calib=spec, limit=2, max_drop=1.0,
                                  out_dir=tmp_path / "out", say=lambda m: None)
    status = {c.name: c.status for c in result.candidates}
    # every planned candidate also as sub-pixel upsampling (the model's upscore8 fits the rewrite)
    assert {f"{n}-subpixel" for n in fake if status.get(n) == "kept" and "-subpixel" not in n} <= set(status)
    assert result.chosen.name == "openvino-int8-subpixel-labels" and status["onnxruntime-int8"] == "dropped"
    assert status["openvino-int8"] == status["openvino-fp32"] == status["openvino-int8-subpixel"] == "kept"
    assert not any(n.endswith("-labels") for n in status if n != result.chosen.name)  # one twin, of the fastest
    assert "the argmax inside pays: 11.0 vs 12.0 ms" in result.chosen.reason
    assert "onnxruntime-int8 is faster but was dropped" in result.chosen.reason
    assert result.path == tmp_path / "out" / "m.openvino-int8-subpixel-labels.xml"
    assert open_model(result.path).precision == "int8" and open_model(result.path).output_kind == "labels"
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| openvino-int8-subpixel-labels | **chosen** | 11.0 |" in report and "beyond --max-drop 1" in report
    # a twin that saves under 5% is not written: the class scores are worth more
    monkeypatch.setitem(fake, "openvino-int8-subpixel-labels", (11.7, -0.5))
    result = choose.optimize_auto(tmp_path / "m.pt", val=spec, calib=spec, limit=2, max_drop=1.0, backend="openvino",
                                  precision="int8", out_dir=tmp_path / "out3", say=lambda m: None)
    status = {c.name: (c.status, c.reason) for c in result.candidates}
    assert result.chosen.name == "openvino-int8-subpixel" and result.path.name == "m.openvino-int8-subpixel.xml"
    assert status["openvino-int8-subpixel-labels"][0] == "kept"
    assert status["openvino-int8-subpixel-labels"][1].startswith("saves under 5%: 11.7 vs 12.0 ms")
    # --output logits: no twin
    result = choose.optimize_auto(tmp_path / "m.pt", val=spec, calib=spec, limit=2, max_drop=1.0, backend="openvino",
                                  precision="int8", output="logits", out_dir=tmp_path / "out4", say=lambda m: None)
    assert [c.name for c in result.candidates] == ["openvino-int8", "openvino-int8-subpixel"]
    assert (tmp_path / "out" / "candidates.png").stat().st_size > 5000
    data = json.loads((tmp_path / "out" / "candidates.json").read_text())
    assert [c["status"] for c in data["candidates"]].count("chosen") == 1
    # without calibration data the int8 candidates are skipped with the reason, and a bound nobody meets refuses
    monkeypatch.setitem(fake, "openvino-fp32", (20.0, -5.0))
    plan = choose.plan_candidates("auto", "auto", calib=False)
    assert {c.name: c.reason for c in plan if c.status == "skipped"}["openvino-int8"].startswith("int8 needs")
    with pytest.raises(choose.BudgetExceeded, match="no candidate kept"):
        choose.optimize_auto(tmp_path / "m.pt", val=spec, limit=2, max_drop=0.01, backend="openvino",
                             precision="fp32", out_dir=tmp_path / "out2", say=lambda m: None)


def test_time_interleaved_visits_every_path_each_round_in_a_rotated_order():
    from fcnkit.export.bench import time_interleaved

    calls = []
    fns = {n: (lambda x, n=n: calls.append(n)) for n in "abc"}
    timings = time_interleaved(fns, torch.zeros(2, 3, 4, 4), warmup=1, repeats=6, rounds=3)
    assert calls[:3] == ["a", "b", "c"]  # one warm-up call each
    rounds = calls[3:]
    assert rounds == ["a"] * 2 + ["b"] * 2 + ["c"] * 2 + ["b"] * 2 + ["c"] * 2 + ["a"] * 2 + ["c"] * 2 + ["a"] * 2 + ["b"] * 2
    assert {n: len(t.samples_ms) for n, t in timings.items()} == {"a": 6, "b": 6, "c": 6}
    assert all(t.batch == 2 and t.median_ms >= 0 for t in timings.values())


def test_subpixel_torch_variant_reopens_with_its_structure_and_the_same_masks(tmp_path):
    """A torch file whose upscore8 became conv + depth-to-space records that in its recipe, and
    loading rebuilds the rewritten structure before its weights (strict), same outputs."""
    from fcnkit.export.optimize import build_variant, write_variant
    from fcnkit.models.subpixel import SubpixelUpsample

    model = fc7_driven_model()
    variant = build_variant(model, backend="torch", precision="fp32", workdir=tmp_path / "w", subpixel=True)
    assert variant.name == "torch-fp32-subpixel" and variant.recipe["subpixel"] == 1
    path = write_variant(variant, tmp_path / "m.pt", {})
    reopened = load_model(path)
    assert isinstance(reopened.decoder.upscore8, SubpixelUpsample)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(reopened(x)["seg"], model.eval()(x)["seg"], atol=1e-3, rtol=1e-4)


def test_auto_on_a_tiny_model_writes_a_valid_file_and_report(tmp_path, capsys):
    model = fc7_driven_model()
    save_model(model, tmp_path / "m.pt", classes=[f"c{i}" for i in range(11)], ignore_index=255)
    spec = self_labelled_camvid(tmp_path / "data", model)
    code = main(["optimize", str(tmp_path / "m.pt"), "--backend", "auto", "--precision", "auto", "--val", spec,
                 "--calib", spec, "--limit", "2", "--calib-limit", "2", "--repeats", "1", "--warmup", "0",
                 "--max-drop", "100", "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0, out
    data = json.loads((tmp_path / "out" / "candidates.json").read_text())
    chosen = next(c for c in data["candidates"] if c["status"] == "chosen")
    measured = [c for c in data["candidates"] if "measured" in c]
    # the fastest measured file within the bound (--max-drop 100: all), unless its labels twin saves 5%
    # (a torch file has no twin: the argmax is exported graphs' option)
    assert len(measured) >= 3
    fastest = min((c for c in measured if c["output"] == "logits"), key=lambda c: c["measured"]["median_ms"])
    twins = [c for c in measured if c["output"] == "labels"]
    assert len(twins) <= 1 and all(t["backend"] != "torch" for t in twins)
    pays = twins and twins[0]["measured"]["median_ms"] <= 0.95 * fastest["measured"]["median_ms"]
    assert chosen is (twins[0] if pays else fastest)
    written = Path(data["written"])
    assert written.parent == tmp_path / "out" and f"chose {chosen['backend']}-{chosen['precision']}" in out
    pred = Predictor(written).predict(np.zeros((64, 96, 3), np.uint8))
    assert pred.mask.shape == (64, 96) and (tmp_path / "out" / "report.md").is_file()
