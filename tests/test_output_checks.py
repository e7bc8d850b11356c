"""An output that cannot be written (a folder, a file where a folder should be, a read-only
folder, the wrong suffix) is refused with one line naming it, exit 2, before any work."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from fcnkit import create_model
from fcnkit.cli import main
from fcnkit.models.saved import save_model


def tiny() -> torch.nn.Module:
    return create_model("fcn32s", num_classes=2, width=1 / 16)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m.pt"
    save_model(tiny(), path)
    return path


@pytest.fixture
def unwritable(tmp_path) -> Path:
    """A folder this process cannot create files in: chmod 555 (root ignores that, so there
    a folder of the read-only sysfs)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    candidates = [folder, Path("/sys")]
    try:
        for c in candidates:
            try:
                with tempfile.TemporaryFile(dir=c):
                    pass
            except OSError:
                yield c
                return
        pytest.skip("no folder this process cannot write in (root, no read-only sysfs)")
    finally:
        folder.chmod(0o755)


def _never(*_a, **_k):
    raise AssertionError("the work started before the output was checked")


def test_check_output_file_and_dir(tmp_path, unwritable) -> None:
    from fcnkit.io import check_output_dir, check_output_file

    (tmp_path / "folder.onnx").mkdir()
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match=r"folder.onnx: is a folder; the output must be a file name ending in .onnx"):
        check_output_file(tmp_path / "folder.onnx", suffixes=(".onnx",))
    with pytest.raises(ValueError, match=r"m.xml: the output must end in .onnx"):
        check_output_file(tmp_path / "m.xml", suffixes=(".onnx",))
    with pytest.raises(ValueError, match=r"file.txt/m.onnx: cannot be written, .*file.txt is a file, not a folder"):
        check_output_file(tmp_path / "file.txt" / "m.onnx")
    with pytest.raises(ValueError, match=rf"{unwritable}/m.onnx: cannot write in {unwritable} \("):
        check_output_file(unwritable / "m.onnx")
    with pytest.raises(ValueError, match=r"cannot create .*/ro2/deep in "):
        check_output_file(unwritable / "ro2" / "deep" / "m.onnx")
    with pytest.raises(ValueError, match=r"file.txt: the output folder is an existing file, not a folder"):
        check_output_dir(tmp_path / "file.txt")
    with pytest.raises(ValueError, match=r"cannot write in this folder"):
        check_output_dir(unwritable)
    assert check_output_file(tmp_path / "new" / "deeper" / "m.onnx", suffixes=(".onnx",)).name == "m.onnx"
    assert check_output_dir(tmp_path / "new" / "dir") == tmp_path / "new" / "dir"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "folder.onnx", "ro"]  # nothing created


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_export_to_a_folder_or_read_only_folder_is_refused_first(fmt, tmp_path, unwritable, monkeypatch) -> None:
    from fcnkit.export import onnx_export
    from fcnkit.export.onnx_export import export_onnx
    from fcnkit.export.openvino_export import export_openvino

    monkeypatch.setattr(onnx_export, "to_onnx_proto", _never)
    monkeypatch.setattr("fcnkit.export.openvino_export.to_onnx_proto", _never)
    export, suffix = (export_onnx, ".onnx") if fmt == "onnx" else (export_openvino, ".xml")
    (tmp_path / f"dir{suffix}").mkdir()
    with pytest.raises(ValueError, match=rf"dir{suffix}: is a folder"):
        export(tiny(), tmp_path / f"dir{suffix}")
    with pytest.raises(ValueError, match=rf"{unwritable}/m{suffix}: cannot write in"):
        export(tiny(), unwritable / f"m{suffix}")
    (tmp_path / "a.txt").write_text("")
    with pytest.raises(ValueError, match=r"a.txt is a file, not a folder"):
        export(tiny(), tmp_path / "a.txt" / f"m{suffix}")
    if fmt == "openvino":  # its companion files are checked as well
        (tmp_path / "ir.bin").mkdir()
        with pytest.raises(ValueError, match=r"ir.bin: is a folder"):
            export(tiny(), tmp_path / "ir.xml")


def test_export_cli_to_a_folder_exits_2_with_one_line(model_file, tmp_path, capsys) -> None:
    (tmp_path / "out.onnx").mkdir()
    assert main(["export", str(model_file), "--out", str(tmp_path / "out.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"fcnkit export: error: {tmp_path / 'out.onnx'}: is a folder; the ONNX export must be a file " \
                  f"name ending in .onnx"
    (tmp_path / "rel.safetensors").mkdir()
    assert main(["export", str(model_file), "--format", "safetensors", "--out", str(tmp_path / "rel.safetensors")]) == 2
    assert "rel.safetensors: is a folder" in capsys.readouterr().err


def test_optimize_checks_out_before_loading_anything(model_file, tmp_path, monkeypatch) -> None:
    from fcnkit.export import optimize as opt

    monkeypatch.setattr(opt, "load_model", _never)
    (tmp_path / "v.onnx").mkdir()
    with pytest.raises(ValueError, match=r"v.onnx: is a folder"):
        opt.optimize(model_file, val="x", backend="onnxruntime", out=tmp_path / "v.onnx")
    with pytest.raises(ValueError, match=r"v.onnx.txt: the openvino variant must end in .xml"):
        opt.optimize(model_file, val="x", backend="openvino", out=tmp_path / "v.onnx.txt")
    (tmp_path / "w.json").mkdir()  # the IR's metadata sidecar would land on a folder
    with pytest.raises(ValueError, match=r"w.json: is a folder"):
        opt.optimize(model_file, val="x", backend="openvino", out=tmp_path / "w.xml")


def test_optimize_default_output_is_under_runs_never_beside_the_checkpoint(tmp_path, unwritable, monkeypatch) -> None:
    from fcnkit.export import optimize as opt

    monkeypatch.setattr(opt, "load_model", _never)
    monkeypatch.chdir(tmp_path)  # a read-only model folder is no obstacle: the default is ./runs/optimize/N
    with pytest.raises(AssertionError, match="the work started"):
        opt.optimize(unwritable / "m.pt", val="x", backend="torch")
    assert not list(unwritable.glob("m.*"))
    variant = SimpleNamespace(name="int8", backend="openvino")
    assert opt.default_output("weights/m.pt", variant, "runs/optimize/2") == Path("runs/optimize/2/m.int8.xml")
    monkeypatch.chdir(unwritable)  # nowhere to put runs/: refused before any work
    with pytest.raises(ValueError, match=r"runs/optimize/1: cannot (create|write)"):
        opt.optimize(tmp_path / "m.pt", val="x", backend="torch")


def test_predict_out_being_a_file(model_file, tmp_path, capsys) -> None:
    Image.new("RGB", (20, 16)).save(tmp_path / "x.png")
    (tmp_path / "out").write_text("a file")
    assert main(["predict", str(model_file), str(tmp_path / "x.png"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'out'}: the output folder is an existing file, not a folder" in err
    assert (tmp_path / "out").read_text() == "a file"


def test_eval_out_being_a_file_is_refused_before_evaluating(model_file, tmp_path, monkeypatch) -> None:
    from fcnkit.inference import evaluate as ev

    monkeypatch.setattr(ev, "open_model", _never)
    (tmp_path / "report").write_text("")
    with pytest.raises(ValueError, match=r"report: the report folder is an existing file"):
        ev.evaluate_checkpoint(model_file, "camvid:nowhere", out_dir=tmp_path / "report")


def test_video_output_is_checked_before_decoding(tmp_path) -> None:
    pytest.importorskip("av")
    from fcnkit.inference.video import predict_video

    (tmp_path / "o.mp4").mkdir()
    with pytest.raises(ValueError, match=r"o.mp4: is a folder; the overlay video must be a file name"):
        predict_video(None, tmp_path / "missing.mp4", tmp_path / "o.mp4")


def test_fetch_destination_being_a_file(tmp_path, monkeypatch) -> None:
    from fcnkit.data import fetch

    monkeypatch.setattr(fetch, "download", _never)
    (tmp_path / "dest").write_text("")
    with pytest.raises(ValueError, match=r"dest: the destination folder is an existing file"):
        fetch.fetch("camvid", tmp_path / "dest")


def test_demo_folder_being_a_file(tmp_path) -> None:
    from fcnkit.demo.pipeline import run_demo

    (tmp_path / "demo").write_text("")
    with pytest.raises(ValueError, match=r"demo: the demo folder is an existing file"):
        run_demo(tmp_path / "demo")


def test_save_model_to_a_folder(tmp_path) -> None:
    (tmp_path / "m.pt").mkdir()
    with pytest.raises(ValueError, match=r"m.pt: is a folder; the model file must be a file name"):
        save_model(tiny(), tmp_path / "m.pt")
    assert os.listdir(tmp_path / "m.pt") == []


def test_bench_checks_its_chart_and_json_before_timing(model_file, tmp_path, monkeypatch, capsys) -> None:
    from fcnkit.inference import runtime

    monkeypatch.setattr(runtime, "open_model", _never)
    (tmp_path / "c.png").mkdir()
    for extra, said in [(["--chart", str(tmp_path / "c.png")], "c.png: is a folder; the chart must be a file name ending in .png or .svg or .pdf"),
                        (["--chart", str(tmp_path / "c.txt")], "c.txt: the chart must end in .png or .svg or .pdf"),
                        (["--json", str(tmp_path / "c.png" / "x" / "r.json")], None),
                        (["--json", str(tmp_path / "r.csv")], "r.csv: the JSON report must end in .json")]:
        args = ["bench", str(model_file), "--peak-gflops", "1", "--chart", str(tmp_path / "ok.png"), *extra]
        if said is None:  # a folder it may create (inside a folder, c.png/x/): checked, so the work starts
            with pytest.raises(AssertionError, match="the work started"):
                main(args)
        else:
            assert main(args) == 2
            assert capsys.readouterr().err.strip() == f"fcnkit bench: error: {tmp_path}/{said}"
    assert not (tmp_path / "ok.png").exists()


def test_data_stats_checks_out_before_reading_the_labels(tmp_path, monkeypatch, capsys) -> None:
    from fcnkit.data import formats

    monkeypatch.setattr(formats, "build_dataset", _never)
    (tmp_path / "w.json").mkdir()
    assert main(["data", "stats", str(tmp_path), "--out", str(tmp_path / "w.json")]) == 2
    assert capsys.readouterr().err.strip() == (f"fcnkit data: error: {tmp_path / 'w.json'}: is a folder; the "
                                               f"statistics file must be a file name ending in .json")


def test_one_overwrite_rule_for_bench_export_and_optimize(model_file, tmp_path, monkeypatch, capsys) -> None:
    """Issue 26.7: bench replaced bench.png and export its --out silently, while predict refused."""
    from fcnkit.inference import runtime

    monkeypatch.setattr(runtime, "open_model", _never)
    (tmp_path / "chart.png").write_bytes(b"mine")
    (tmp_path / "m.onnx").write_bytes(b"mine")
    (tmp_path / "ir.bin").write_bytes(b"mine")  # an OpenVINO IR's weights count too
    (tmp_path / "auto").mkdir()
    (tmp_path / "auto" / "report.md").write_text("mine")
    for args, path in [(["bench", str(model_file), "--chart", str(tmp_path / "chart.png")], "chart.png"),
                       (["export", str(model_file), "--out", str(tmp_path / "m.onnx")], "m.onnx"),
                       (["export", str(model_file), "--format", "openvino", "--out", str(tmp_path / "ir.xml")], "ir.bin"),
                       (["optimize", str(model_file), "--backend", "auto", "--val", "camvid:x", "--out", str(tmp_path / "auto")],
                        "auto")]:
        assert main(args) == 2
        assert capsys.readouterr().err.strip().endswith(f"{tmp_path / path}: already exists; add --overwrite to replace it")
    assert (tmp_path / "chart.png").read_bytes() == b"mine" and (tmp_path / "m.onnx").read_bytes() == b"mine"
    with pytest.raises(AssertionError, match="the work started"):  # --overwrite lets the work start
        main(["bench", str(model_file), "--peak-gflops", "1", "--chart", str(tmp_path / "chart.png"), "--overwrite"])
    assert main(["export", str(model_file), "--out", str(tmp_path / "m.onnx"), "--overwrite"]) == 0
    assert (tmp_path / "m.onnx").read_bytes()[:4] != b"mine"


def test_bench_chart_defaults_to_a_fresh_run_folder(model_file, tmp_path, monkeypatch) -> None:
    from fcnkit.inference import runtime

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runtime, "open_model", _never)
    (tmp_path / "runs" / "bench" / "1").mkdir(parents=True)
    with pytest.raises(AssertionError, match="the work started"):
        main(["bench", str(model_file), "--peak-gflops", "1"])
    assert not (tmp_path / "bench.png").exists()
