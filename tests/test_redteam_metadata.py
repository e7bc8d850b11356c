"""Red-team cases for model files (issue 25.5): broken or contradictory metadata is refused
with one line naming the file and the field, never a traceback, a huge allocation or a model
that serves nonsense."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from fcnkit import create_model
from fcnkit.models.metadata import MetadataError
from fcnkit.models.saved import load_model, model_record, save_model
from fcnkit.models.spec import with_names


def _tiny():
    return create_model("fcn8s", num_classes=3, encoder="resnet18", width=1.0)


def _pt(tmp_path, name, edit, record=None):
    """A .pt model record (default: the current format's) with ``edit(record)`` applied."""
    rec = record if record is not None else model_record(_tiny(), classes=["a", "b", "c"])
    edit(rec)
    path = tmp_path / name
    torch.save(rec, path)
    return path


def _v1_record():
    """A record as fcnkit-model/1 wrote it: the builder config, and class names and
    preprocessing inside meta (such files still load, converted)."""
    model = _tiny()
    return {"format": "fcnkit-model/1", "config": dict(model.spec.builder_config),
            "meta": {"preprocessing": model.spec.preprocessing.to_dict(), "classes": ["a", "b", "c"]},
            "model": model.state_dict()}


def _safetensors(tmp_path, name, config, meta):
    from safetensors.torch import save

    state = {k: v.contiguous() for k, v in _tiny().state_dict().items()}
    header = {"format": "fcnkit-model/1"}
    if config is not None:
        header["config"] = config if isinstance(config, str) else json.dumps(config)
    if meta is not None:
        header["meta"] = meta if isinstance(meta, str) else json.dumps(meta)
    path = tmp_path / name
    path.write_bytes(save(state, metadata=header))
    return path


GOOD_CONFIG = {"name": "fcn8s", "num_classes": 3, "encoder": "resnet18", "geometry": "fast", "width": 1.0,
               "learnable_upsampling": False}
PREP = {"channel_order": "RGB", "scale": 1.0, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
BAD_STD = {"channel_order": "RGB", "scale": 1, "mean": [0, 0, 0], "std": [0, 1, 1]}


@pytest.mark.parametrize("edit,field", [
    (lambda r: r.pop("spec"), "must be a mapping, not NoneType"),
    (lambda r: r.__setitem__("spec", [1, 2]), "must be a mapping, not list"),
    (lambda r: r["spec"]["config"].__setitem__("colour", "red"), "model metadata: config.colour is not an argument "
                                                                 "of fcn8s"),
    (lambda r: r["spec"].__setitem__("num_classes", "eleven"), "model spec: num_classes must be a whole number"),
    (lambda r: r["spec"].__setitem__("num_classes", -1), "model spec: num_classes must be a whole number"),
    (lambda r: r["spec"].__setitem__("num_classes", 10**9), "model spec: num_classes must be a whole number"),
    (lambda r: r["spec"]["config"].__setitem__("num_classes", "eleven"), "config.num_classes must be a whole number"),
    (lambda r: r["spec"].__setitem__("name", "fcn99s"), "config.name unknown model"),
    (lambda r: r["spec"].__setitem__("heads", ["masks"]), "model spec: heads must be a non-empty list of ['seg', 'boxes'], not ['masks']"),
    (lambda r: r["spec"].__setitem__("preprocessing", BAD_STD), "spec.preprocessing.std must be positive"),
    (lambda r: r["spec"].__setitem__("preprocessing", "imagenet"), "spec.preprocessing must be a mapping"),
    (lambda r: r["spec"].__setitem__("classes", ["a", "b"]), "model spec: classes names 2 classes but the model "
                                                             "scores 3"),
    (lambda r: r["meta"].__setitem__("palette", [[0, 0, 300]]), "model metadata: meta.palette must be a list of "
                                                                "[r, g, b]"),
    (lambda r: r["meta"].__setitem__("conf", 7), "model metadata: meta.conf must be a score in [0, 1]"),
])
def test_a_pt_model_with_broken_metadata_is_refused_naming_the_field(tmp_path, edit, field):
    path = _pt(tmp_path, "m.pt", edit)
    with pytest.raises(MetadataError) as e:
        load_model(path)
    assert str(e.value).startswith(f"{path}: model ") and field in str(e.value)


@pytest.mark.parametrize("edit,field", [
    (lambda r: r.pop("config"), "config must be a mapping"),
    (lambda r: r.__setitem__("config", [1, 2]), "config must be a mapping"),
    (lambda r: r["config"].__setitem__("colour", "red"), "config.colour is not an argument of fcn8s"),
    (lambda r: r["config"].__setitem__("num_classes", "eleven"), "config.num_classes must be a whole number"),
    (lambda r: r["config"].__setitem__("num_classes", -1), "config.num_classes must be a whole number"),
    (lambda r: r["config"].__setitem__("num_classes", 10**9), "config.num_classes must be a whole number"),
    (lambda r: r["config"].__setitem__("name", "fcn99s"), "config.name unknown model"),
    (lambda r: r["meta"].__setitem__("preprocessing", BAD_STD), "meta.preprocessing.std must be positive"),
    (lambda r: r["meta"].__setitem__("preprocessing", "imagenet"), "meta.preprocessing must be a mapping"),
    (lambda r: r["meta"].__setitem__("classes", ["a", "b"]), "meta.classes names 2 classes but the model scores 3"),
    (lambda r: r["meta"].__setitem__("palette", [[0, 0, 300]]), "meta.palette must be a list of [r, g, b]"),
    (lambda r: r["meta"].__setitem__("conf", 7), "meta.conf must be a score in [0, 1]"),
])
def test_an_old_format_pt_model_with_broken_metadata_is_refused_naming_the_field(tmp_path, edit, field):
    path = _pt(tmp_path, "m.pt", edit, _v1_record())
    with pytest.raises(MetadataError) as e:
        load_model(path)
    assert str(e.value).startswith(f"{path}: model metadata: ") and field in str(e.value)


@pytest.mark.parametrize("config,meta,field", [  # files of the old format: the current one is written by save_model
    (None, {"preprocessing": PREP}, "config is missing"),
    ("{not json", {"preprocessing": PREP}, "config is not valid JSON"),
    (GOOD_CONFIG, "[1, 2", "meta is not valid JSON"),
    ({**GOOD_CONFIG, "num_classes": 10**9}, {}, "config.num_classes must be a whole number"),
    (GOOD_CONFIG, {"classes": ["x"] * 11}, "meta.classes names 11 classes but the model scores 3"),
])
def test_a_safetensors_model_with_broken_metadata_is_refused(tmp_path, config, meta, field):
    path = _safetensors(tmp_path, "m.safetensors", config, meta)
    with pytest.raises(MetadataError, match=field):
        load_model(path)


def test_the_cli_says_one_line_and_exits_2(tmp_path):
    path = _pt(tmp_path, "m.pt", lambda r: r["spec"]["config"].__setitem__("num_classes", "eleven"))
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (16, 16)).save(image)
    proc = subprocess.run([sys.executable, "-m", "fcnkit", "predict", str(path), str(image), "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{path}: model metadata: config.num_classes must be a whole number" in proc.stderr


def test_an_openvino_sidecar_with_wrong_types_is_refused_naming_it(tmp_path):
    pytest.importorskip("openvino")
    from fcnkit.export.openvino_export import export_openvino
    from fcnkit.inference.runtime import open_model, sidecar_path

    model = create_model("fcn8s", num_classes=3, encoder="resnet18", width=1.0).eval()
    model.spec = with_names(model.spec, ["a", "b", "c"])
    xml = tmp_path / "m.xml"
    export_openvino(model, xml, verify=False)
    side = sidecar_path(xml)
    meta = json.loads(side.read_text())
    for key, value, field in (("classes", "abc", "model spec: classes must be a list"),
                              ("num_classes", -1, "model spec: num_classes must be a whole number"),
                              ("preprocessing", {**PREP, "scale": "big"}, "preprocessing.scale")):
        side.write_text(json.dumps({**meta, "spec": {**meta["spec"], key: value}}))
        with pytest.raises(MetadataError) as e:
            open_model(xml)
        assert str(e.value).startswith(str(side)) and field in str(e.value)
    side.write_text(json.dumps({**meta, "palette": "red"}))  # the file's other facts are checked too
    with pytest.raises(MetadataError, match="meta.palette must be a list"):
        open_model(xml)
    side.write_text(json.dumps({**meta, "format": "fcnkit-export/9"}))
    with pytest.raises(MetadataError, match="format is 'fcnkit-export/9'"):
        open_model(xml)
    side.write_text("{broken")
    with pytest.raises(MetadataError, match="not valid JSON"):
        open_model(xml)


def test_good_files_still_load(tmp_path):
    model = _tiny()
    save_model(model, tmp_path / "ok.pt", classes=["a", "b", "c"], conf=0.3)
    save_model(model, tmp_path / "ok.safetensors", classes=["a", "b", "c"])
    _pt(tmp_path, "old.pt", lambda r: None, _v1_record())
    _safetensors(tmp_path, "old.safetensors", GOOD_CONFIG, {"classes": ["a", "b", "c"], "preprocessing": PREP})
    for name in ("ok.pt", "ok.safetensors", "old.pt", "old.safetensors"):
        assert load_model(tmp_path / name).spec.classes == ("a", "b", "c")
