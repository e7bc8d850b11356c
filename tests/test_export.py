"""Export: ONNX / OpenVINO files match eager PyTorch at two sizes for every model family."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from fcnkit.cli import main
from fcnkit.export.onnx_export import export_onnx, save_proto, set_metadata
from fcnkit.export.openvino_export import export_openvino
from fcnkit.export.verify import sample_input
from fcnkit.heads import BOXES, SEG
from fcnkit.inference.runtime import OnnxRuntimeModel, OpenVINOModel, open_model, sidecar_path
from fcnkit.models import create_model
from fcnkit.models.saved import save_model
from fcnkit.models.spec import with_names

SIZES = ((64, 96), (45, 77))  # a multiple of 32 and not: the fast geometry pads the second
FAMILIES = {
    "vgg16-fast": dict(encoder="vgg16", geometry="fast", width=1 / 16),
    "vgg16-reference": dict(encoder="vgg16", geometry="reference", width=1 / 16),
    "resnet18": dict(encoder="resnet18"),
    "mobilenet_v3_large": dict(encoder="mobilenet_v3_large", width=0.25),
    "efficientnet_lite0": dict(encoder="efficientnet_lite0"),  # timm, static TF "same" padding
}
CLASSES = ["sky", "road", "car"]  # named in the spec
META = {"palette": [[128, 128, 128], [128, 64, 128], [64, 0, 128]], "ignore_index": 255}  # the file's other facts


def tiny_model(**kwargs) -> torch.nn.Module:
    """A narrow FCN-8s with non-trivial scores (score layers start at zero) and BN statistics."""
    model = create_model("fcn8s", num_classes=3, **kwargs).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "score" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    model.spec = with_names(model.spec, CLASSES)
    model.meta = dict(META)
    return model


@pytest.fixture(scope="module", params=list(FAMILIES))
def exported(request, tmp_path_factory):
    model = tiny_model(**FAMILIES[request.param])
    path = tmp_path_factory.mktemp(request.param) / "model.onnx"
    report = export_onnx(model, path, sizes=SIZES)
    return model, path, report


def test_onnx_parity_two_sizes(exported):
    model, path, report = exported
    assert path.is_file() and report.size_bytes == path.stat().st_size
    umask = os.umask(0)
    os.umask(umask)
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~umask)  # a normal file, not a temp's 0600
    assert [(p.batch, p.size) for p in report.parity] == [(1, SIZES[0]), (2, SIZES[1])]
    for p in report.parity:
        assert p.agreement >= 0.999
        assert p.max_abs_diff < 1e-4 * max(1.0, p.logit_scale)
        assert p.logit_scale > 1e-3  # the scores are not all zero, so the comparison means something
    # a third size and batch never seen at export: dynamic batch / height / width
    runtime = OnnxRuntimeModel(path)
    x = torch.randn(3, 3, 33, 130)
    with torch.no_grad():
        ref = model(x)
    out = runtime(x)
    assert list(out) == ["seg"] and out["seg"].shape == (3, 3, 33, 130)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_openvino_parity_two_sizes(exported, tmp_path):
    model, onnx_path, _ = exported
    xml = tmp_path / "model.xml"
    report = export_openvino(model, xml, sizes=SIZES, onnx_path=onnx_path)
    assert xml.is_file() and xml.with_suffix(".bin").is_file() and sidecar_path(xml).is_file()
    assert len(report.parity) == 2 and all(p.agreement >= 0.999 for p in report.parity)
    runtime = OpenVINOModel(xml)
    x = torch.randn(2, 3, 40, 70)
    with torch.no_grad():
        ref = model(x)
    torch.testing.assert_close(runtime(x), ref, atol=1e-4, rtol=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin", "model.json", "model.xml"]


def test_openvino_compiles_per_shape_then_shares_a_dynamic_network(tmp_path):
    """The first few input shapes get a static network each (faster on OpenVINO's CPU plugin);
    later shapes share one dynamic network instead of a compile per photo; all agree with torch."""
    from fcnkit.inference.runtime import STATIC_SHAPES

    model = tiny_model(**FAMILIES["resnet18"])
    xml = tmp_path / "model.xml"
    export_openvino(model, xml, sizes=SIZES)
    runtime = OpenVINOModel(xml)
    shapes = [(1, 3, 40 + 8 * i, 70) for i in range(STATIC_SHAPES + 2)]
    for shape in shapes + shapes[:1]:
        x = torch.randn(shape)
        with torch.no_grad():
            ref = model(x)
        torch.testing.assert_close(runtime(x), ref, atol=1e-4, rtol=1e-4)
    compiled = list(runtime._compiled)
    assert compiled == shapes[:STATIC_SHAPES] + [()]  # 5th and 6th shape: the one dynamic network
    static_inputs = runtime._compiled[shapes[0]].inputs[0].get_partial_shape()
    assert static_inputs.is_static and list(static_inputs.to_shape()) == list(shapes[0])
    assert runtime._compiled[()].inputs[0].get_partial_shape().is_dynamic

    pinned = OpenVINOModel(xml, static=True)  # a fixed-size benchmark: always per shape, the last few kept
    for shape in shapes:
        pinned(torch.randn(shape))
    assert list(pinned._compiled) == shapes[-STATIC_SHAPES:]
    dynamic = OpenVINOModel(xml, static=False)
    dynamic(torch.randn(shapes[0]))
    assert list(dynamic._compiled) == [()]


def test_openvino_reads_an_onnx_file_in_a_folder_with_a_comma(exported, tmp_path):
    """ovc takes a comma in a path as a list of files; such a path is read as the one file it is."""
    import shutil

    import openvino as ov

    from fcnkit.export.openvino_export import onnx_to_openvino

    model, onnx_path, _ = exported
    folder = tmp_path / "run 3, calibrated"
    folder.mkdir()
    copy = shutil.copy(onnx_path, folder / "model.onnx")
    converted = onnx_to_openvino(copy)
    # the same graph as ovc makes from a plain path (Core.read_model's would differ: NNCF's int8 version of
    # that one runs depthwise convs in fp32)
    plain = onnx_to_openvino(onnx_path)
    assert sorted(op.get_type_name() for op in converted.get_ops()) == sorted(op.get_type_name() for op in plain.get_ops())
    # f32 as fcnkit's runner asks: on a CPU with AMX / AVX-512 bf16 the plugin's default is bf16
    compiled = ov.Core().compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    x = torch.randn(1, 3, 40, 70)
    with torch.no_grad():
        ref = model(x)["seg"]
    torch.testing.assert_close(torch.from_numpy(compiled(x.numpy())[0]), ref, atol=1e-4, rtol=1e-4)


def test_load_runtime_carries_metadata_and_matches_torch_argmax(exported):
    model, path, _ = exported
    runtime = open_model(path)
    assert runtime.backend == "onnxruntime" and runtime.precision == "fp32"
    assert runtime.spec.classes == tuple(CLASSES) and runtime.meta["palette"] == META["palette"]
    assert runtime.meta["ignore_index"] == 255 and runtime.spec.name == "fcn8s"
    assert runtime.spec.preprocessing == model.spec.preprocessing and runtime.spec.num_classes == 3
    assert runtime.spec == model.spec  # the whole contract travels with the file
    image = torch.rand(1, 3, 50, 60)
    x = runtime.spec.preprocessing(image)
    with torch.no_grad():
        expected = model(x)["seg"].argmax(1)
    assert torch.equal(runtime(x)["seg"].argmax(1), expected)


def test_failed_parity_writes_nothing(tmp_path, monkeypatch):
    model = tiny_model(**FAMILIES["vgg16-fast"])
    path = tmp_path / "broken.onnx"
    real_run = OnnxRuntimeModel._run
    # a runtime that is off by a shuffle of the classes, as a wrong export would be
    monkeypatch.setattr(OnnxRuntimeModel, "_run",
                        lambda self, x: {k: a[:, ::-1].copy() for k, a in real_run(self, x).items()})
    with pytest.raises(RuntimeError, match="does not match eager PyTorch"):
        export_onnx(model, path, sizes=SIZES)
    assert list(tmp_path.iterdir()) == []


def test_cli_export_onnx_and_openvino(tmp_path, capsys, monkeypatch):
    model = tiny_model(**FAMILIES["vgg16-fast"])
    ckpt = tmp_path / "weights" / "tiny.pt"
    ckpt.parent.mkdir()
    save_model(model, ckpt, classes=CLASSES, **META)
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(ckpt), "--format", "openvino", "--check-sizes", "64x64", "35x50"]) == 0
    out = capsys.readouterr().out
    assert "argmax agreement 100.000%" in out and "35x50" in out
    xml = tmp_path / "runs" / "export" / "1" / "tiny.xml"  # by default under ./runs, never beside the model
    assert f"wrote {xml.relative_to(tmp_path)}" in out and sorted(ckpt.parent.iterdir()) == [ckpt]
    side = json.loads(sidecar_path(xml).read_text())
    assert side["spec"]["classes"] == CLASSES and side["precision"] == "fp32"
    runtime = open_model(xml)
    x = torch.randn(1, 3, 48, 52)
    with torch.no_grad():
        assert np.array_equal(runtime(x)["seg"].argmax(1).numpy(), model(x)["seg"].argmax(1).numpy())


def test_cli_export_safetensors_release(tmp_path, capsys, monkeypatch):
    model = tiny_model(**FAMILIES["resnet18"])
    ckpt = tmp_path / "tiny.pt"
    save_model(model, ckpt, val_metrics={"mean_iu": 0.5}, classes=CLASSES, **META)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "export" / "1").mkdir(parents=True)  # taken: the next export goes to 2
    assert main(["export", str(ckpt), "--format", "safetensors"]) == 0
    from fcnkit.models.saved import load_model
    from fcnkit.models.zoo import sha256_of

    out = tmp_path / "runs" / "export" / "2" / "tiny.safetensors"
    assert sha256_of(out) in capsys.readouterr().out
    loaded = load_model(out)
    assert loaded.spec.classes == tuple(CLASSES) and loaded.meta["val_metrics"] == {"mean_iu": 0.5}
    assert out.stat().st_size < 0.6 * ckpt.stat().st_size  # fp16
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=2e-2, rtol=2e-2)
    # a detector's recommended score threshold travels in the release file's metadata
    assert "conf" not in loaded.meta
    assert main(["export", str(ckpt), "--format", "safetensors", "--conf", "0.35", "--out", "c.safetensors"]) == 0
    assert load_model(tmp_path / "c.safetensors").meta["conf"] == 0.35
    assert main(["export", str(ckpt), "--format", "safetensors", "--conf", "1.5", "--out", "d.safetensors"]) == 2
    assert "--conf must be a score in [0, 1]" in capsys.readouterr().err


def test_cli_export_bad_file(tmp_path, capsys):
    bad = tmp_path / "junk.pt"
    bad.write_bytes(b"not a model")
    assert main(["export", str(bad)]) == 2
    assert "junk.pt" in capsys.readouterr().err
    assert not (tmp_path / "junk.onnx").exists()


def test_predictor_gives_the_same_masks_for_torch_and_onnx(exported):
    from fcnkit.inference.predictor import Predictor

    model, path, _ = exported
    image = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)  # (H, W, 3)
    torch_mask = Predictor(model, device="cpu", amp="off").predict(image).mask  # fp32, as exported
    onnx_pred = Predictor(path).predict(image)
    assert onnx_pred.mask.shape == torch_mask.shape == (50, 70)
    assert np.mean(onnx_pred.mask == torch_mask) >= 0.999
    assert onnx_pred.classes == CLASSES


def test_joint_model_exports_every_output_and_runs_predict_and_eval_from_the_files(tmp_path):
    """The joint model (all four outputs: heatmap, size, offset, seg) to ONNX and OpenVINO,
    parity on each output; Predictor and fcnkit eval on the files equal the torch model."""
    from test_data_fixtures import write_camvid

    from fcnkit import Predictor
    from fcnkit.inference.evaluate import evaluate_checkpoint

    torch.manual_seed(0)
    model = create_model("fcn8s_joint", num_classes=11, det_classes=2, encoder="mobilenet_v3_large",
                         width=0.25).eval()
    from fcnkit.data.camvid import CamVid

    model.spec = with_names(model.spec, CamVid.classes, ["cat", "dog"])
    onnx_path, xml = tmp_path / "joint.onnx", tmp_path / "joint.xml"
    report = export_onnx(model, onnx_path, sizes=SIZES)
    assert [p.output for p in report.parity] == ["seg", "heatmap", "size", "offset"] * 2  # spec.outputs, by name
    assert all(p.agreement >= 0.999 for p in report.parity if p.output == "seg")
    ov_report = export_openvino(model, xml, sizes=SIZES, onnx_path=onnx_path)
    assert len(ov_report.parity) == 8 and all(p.max_abs_diff < 1e-3 for p in ov_report.parity)
    image = (np.random.default_rng(0).random((70, 90, 3)) * 255).astype(np.uint8)
    ref = Predictor(model, channels_last=False, conf=0.0).predict(image)  # every peak: an untrained head
    for path in (onnx_path, xml):
        runtime = open_model(path)
        spec = runtime.spec
        assert (spec.heads, spec.outputs, spec.det_classes, spec.output_stride) == (
            {SEG, BOXES}, ("seg", "heatmap", "size", "offset"), 2, 4)
        assert spec == model.spec
        got = Predictor(path, conf=0.0).predict(image)
        assert np.array_equal(got.mask, ref.mask)
        boxes = lambda p: np.array([d["box"] for d in p.detections])  # noqa: E731
        assert len(got.detections) == len(ref.detections) > 0
        np.testing.assert_allclose(boxes(got), boxes(ref), atol=1e-3)
    save_model(model, tmp_path / "joint.pt")
    write_camvid(tmp_path / "camvid", {"val": 2}, size=(40, 48))
    kw = dict(workers=0, progress=False, device="cpu")
    data = f"camvid:{tmp_path / 'camvid'}"
    torch_report = evaluate_checkpoint(tmp_path / "joint.pt", data, out_dir=tmp_path / "e-pt", **kw)
    for path in (onnx_path, xml):
        file_report = evaluate_checkpoint(path, data, out_dir=tmp_path / f"e-{path.suffix[1:]}", **kw)
        assert file_report["backend"] in ("onnxruntime", "openvino") and file_report["task"] == "joint"
        assert file_report["confusion_matrix"] == torch_report["confusion_matrix"]


def as_export_v1(path, out, model) -> None:
    """``path`` as fcnkit-export/1 wrote it: the mask output named "logits", and the builder
    config, class names, preprocessing, task and outputs at the top level of the metadata."""
    import onnx

    proto = onnx.load(str(path))
    for node in proto.graph.node:
        for i, name in enumerate(node.output):
            if name == "seg":
                node.output[i] = "logits"
    for value in (*proto.graph.output, *proto.graph.value_info):
        if value.name == "seg":
            value.name = "logits"
    spec = model.spec
    set_metadata(proto, {**model.meta, "format": "fcnkit-export/1", "preprocessing": spec.preprocessing.to_dict(),
                         "config": spec.builder_config, "task": "segmentation", "outputs": ["logits"],
                         "num_classes": spec.num_classes, "classes": list(spec.classes)})
    save_proto(proto, out)


def test_an_export_v1_onnx_file_still_opens_and_predicts_the_same(exported, tmp_path):
    """Exports written before the spec (fcnkit-export/1, mask output "logits") open through the
    one conversion path: the same spec, the same outputs, the same masks."""
    from fcnkit.inference.predictor import Predictor

    model, path, _ = exported
    old = tmp_path / "old.onnx"
    as_export_v1(path, old, model)
    runtime, current = open_model(old), open_model(path)
    assert runtime.spec == current.spec == model.spec and runtime.meta == current.meta
    x = runtime.spec.preprocessing(torch.rand(2, 3, 47, 66))
    out = runtime(x)
    assert list(out) == ["seg"] and torch.equal(out["seg"], current(x)["seg"])
    with torch.no_grad():
        torch.testing.assert_close(out["seg"], model(x)["seg"], atol=1e-4, rtol=1e-4)
    image = (np.random.default_rng(1).random((50, 70, 3)) * 255).astype(np.uint8)
    assert np.array_equal(Predictor(old).predict(image).mask, Predictor(path).predict(image).mask)


# --- exports with the argmax inside (issue 23.3) ---------------------------------------------

def test_a_labels_export_gives_the_torch_models_classes_and_refuses_what_needs_scores(tmp_path, capsys,
                                                                                       monkeypatch):
    """``--output labels``: ONNX and OpenVINO files whose segmentation output is the (N, H, W)
    uint8 argmax; predict and eval give what the torch model gives; probabilities, TTA and
    tiles (which need class scores) are refused with the reason."""
    from test_data_fixtures import write_camvid

    from fcnkit import Predictor
    from fcnkit.data.camvid import CamVid
    from fcnkit.inference.evaluate import evaluate_checkpoint

    model = create_model("fcn8s", num_classes=11, encoder="vgg16", width=1 / 16).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "score" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    model.spec = with_names(model.spec, CamVid.classes)
    onnx_path, xml = tmp_path / "labels.onnx", tmp_path / "labels.xml"
    report = export_onnx(model, onnx_path, sizes=SIZES, output="labels")
    assert [p.output for p in report.parity] == ["labels", "labels"]
    assert all(p.agreement >= 0.999 for p in report.parity)
    ov_report = export_openvino(model, xml, sizes=SIZES, output="labels", onnx_path=onnx_path)
    assert [p.output for p in ov_report.parity] == ["labels", "labels"]
    assert json.loads(sidecar_path(xml).read_text())["output"] == "labels"
    x = sample_input(model, 2, (45, 77))
    with torch.no_grad():
        expected = model(x)["seg"].argmax(1)  # (2, 45, 77)
    image = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)
    torch_mask = Predictor(model, device="cpu", amp="off", channels_last=False).predict(image).mask
    for path in (onnx_path, xml):
        runtime = open_model(path)
        assert runtime.output_kind == "labels" and runtime.outputs == ("labels",)
        labels = runtime(x)["labels"]
        assert labels.dtype == torch.uint8 and labels.shape == (2, 45, 77)
        assert (labels.long() == expected).float().mean() >= 0.999
        pred = Predictor(runtime)  # an opened runner runs as it is; options for it belong to its opening
        with pytest.raises(ValueError, match="is opened already; open it with threads instead"):
            open_model(runtime, threads=1)
        got = pred.predict(image)
        assert got.mask.dtype == np.uint8 and got.mask.shape == (50, 70)
        assert np.mean(got.mask == torch_mask) >= 0.999
        with pytest.raises(ValueError, match="--output labels.*probabilities need an export with --output logits"):
            pred.predict(image, probabilities=True)
        for options in (dict(tta=True), dict(tile=64)):
            with pytest.raises(ValueError, match="tiles and TTA need"):
                Predictor(path, **options)
    # fcnkit eval scores the classes the file gives: the torch model's confusion matrix
    save_model(model, tmp_path / "m.pt")
    write_camvid(tmp_path / "camvid", {"val": 2}, size=(40, 48))
    kw = dict(workers=0, progress=False, device="cpu")
    data = f"camvid:{tmp_path / 'camvid'}"
    torch_report = evaluate_checkpoint(tmp_path / "m.pt", data, out_dir=tmp_path / "e-pt", amp="off", **kw)
    file_report = evaluate_checkpoint(xml, data, out_dir=tmp_path / "e-xml", **kw)
    assert file_report["confusion_matrix"] == torch_report["confusion_matrix"]
    with pytest.raises(ValueError, match="TTA needs an export with --output logits"):
        evaluate_checkpoint(xml, data, out_dir=tmp_path / "e-tta", tta=True, **kw)
    # the CLI: --output labels for graphs, refused for a release file
    monkeypatch.chdir(tmp_path)
    assert main(["export", "m.pt", "--format", "onnx", "--output", "labels", "--out", "cli.onnx",
                 "--check-sizes", "64x96", "45x77"]) == 0
    assert "parity labels batch 1 64x96: argmax agreement" in capsys.readouterr().out
    assert open_model(tmp_path / "cli.onnx").output_kind == "labels"
    assert main(["export", "m.pt", "--format", "safetensors", "--output", "labels"]) == 2
    assert "--output labels is for onnx and openvino" in capsys.readouterr().err


def test_the_labels_wrapper_refuses_a_detector_and_keeps_a_joint_models_box_maps():
    from fcnkit.export.onnx_export import WithLabels

    detector = create_model("fcn8s_det", det_classes=1, encoder="mobilenet_v3_large", width=0.25).eval()
    with pytest.raises(ValueError, match="only predicts boxes"):
        WithLabels(detector)
    joint = create_model("fcn8s_joint", num_classes=4, det_classes=2, encoder="mobilenet_v3_large",
                         width=0.25).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        out, ref = WithLabels(joint)(x), joint(x)
    assert list(out) == ["labels", "heatmap", "size", "offset"]  # the export's outputs, in this order
    assert out["labels"].dtype == torch.uint8 and torch.equal(out["labels"].long(), ref["seg"].argmax(1))
    assert all(torch.equal(out[k], ref[k]) for k in ("heatmap", "size", "offset"))


def test_labels_of_a_subpixel_model_take_the_argmax_before_the_depth_to_space(tmp_path):
    """With the final upsampling as conv + depth-to-space, ``--output labels`` takes the argmax per
    phase first: the same classes as the argmax of the full scores, one byte per pixel through the
    depth-to-space and the crop, and the caller's model is left as it was."""
    import copy

    import onnx

    from fcnkit.export.onnx_export import WithLabels
    from fcnkit.models.subpixel import subpixel_upsampling
    from fcnkit.nn import class_map

    model = create_model("fcn8s", num_classes=5, encoder="mobilenet_v3_large", width=0.25).eval()
    for p in model.decoder.parameters():
        p.data.normal_(0, 0.2)
    sub = copy.deepcopy(model)
    assert subpixel_upsampling(sub) == 1
    wrapped, plain = WithLabels(sub), WithLabels(model)
    assert wrapped.classes_first and not plain.classes_first
    assert not sub.decoder.upscore8.classes_only  # the wrapper changed a copy
    x = torch.randn(2, 3, 45, 70)
    with torch.no_grad():
        got, scores = wrapped(x)["labels"], sub(x)["seg"]
    assert got.dtype == torch.uint8 and got.shape == (2, 45, 70)
    assert torch.equal(got, class_map(scores).to(torch.uint8))
    # in the graph: DepthToSpace after the ArgMax, on uint8
    path = tmp_path / "sub.onnx"
    report = export_onnx(sub, path, sizes=SIZES, output="labels")
    assert all(p.agreement >= 0.999 for p in report.parity)
    graph = onnx.load(path).graph
    ops = [n.op_type for n in graph.node]
    assert ops.index("ArgMax") < ops.index("DepthToSpace")
    assert torch.equal(open_model(path)(x)["labels"], got)
