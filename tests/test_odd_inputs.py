"""Inputs at the edges: YAML's unquoted words in text fields, extreme aspect ratios, files
that are not models (one line saying what they are not; never advice to load unsafely)."""

from __future__ import annotations

import datetime
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fcnkit import create_model, load
from fcnkit.config import from_dict, load_config, load_recipe
from fcnkit.models.saved import FORMAT, save_model

README = Path(__file__).resolve().parents[1] / "README.md"


# --- YAML words ------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["amp: off", "amp: Off", "amp: no", "amp: false"])
def test_amp_off_unquoted(text, tmp_path) -> None:
    (tmp_path / "r.yaml").write_text(text + "\n")
    assert load_recipe(tmp_path / "r.yaml").amp == "off"
    (tmp_path / "q.yaml").write_text("amp: 'off'\n")  # as quoted
    assert load_recipe(tmp_path / "q.yaml").amp == "off"


def test_amp_off_on_the_command_line() -> None:
    assert load_config(overrides=["amp=off"]).amp == "off"
    assert load_config(overrides=["amp=bf16"]).amp == "bf16"


def test_text_fields_turned_into_booleans_say_to_quote(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"r.yaml: amp: amp must be text, not True \(YAML reads an unquoted "
                                         r"on/yes/true as true\); quote the value"):
        from_dict({"amp": True}, source="r.yaml")
    with pytest.raises(ValueError, match=r"device must be text, not False .*off/no/false.*quote the value"):
        from_dict({"device": False})


def test_none_in_an_optional_text_field_is_null() -> None:
    cfg = from_dict({"encoder_weights": "None", "init_from": "none", "class_weights": "null"})
    assert cfg.encoder_weights is None and cfg.init_from is None and cfg.class_weights is None
    assert from_dict({"encoder_weights": "imagenet"}).encoder_weights == "imagenet"


@pytest.mark.parametrize("names, word", [("[road, off]", "False"), ("[road, yes]", "True"), ("[road, null]", "None")])
def test_class_names_yaml_turned_into_booleans_say_to_quote(names, word, tmp_path) -> None:
    from fcnkit.data.folder import read_class_file
    from fcnkit.data.image_io import DataError

    (tmp_path / "classes.yaml").write_text(f"classes: {names}\n")
    with pytest.raises(DataError, match=rf"classes.yaml: class name {word} is not text \(YAML reads an unquoted "
                                        rf".* so\); quote the name"):
        read_class_file(tmp_path / "classes.yaml")


# --- extreme aspect ratios ---------------------------------------------------------------
@pytest.mark.parametrize("h, w", [(2, 70000), (70000, 2)])
def test_a_strip_beyond_jpeg_limits_gets_its_mask_and_overlay(h, w, tmp_path) -> None:
    from fcnkit.inference.outputs import predict_to_folder
    from fcnkit.inference.postprocess import JPEG_MAX_SIDE
    from fcnkit.inference.predictor import Predictor
    from fcnkit.models.spec import with_names
    from predict_fixtures import PALETTE, colour_fcn

    model = colour_fcn()
    model.spec, model.meta = with_names(model.spec, ["r", "g", "b"]), {"palette": PALETTE}
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(tmp_path / "s.png")
    result = predict_to_folder(Predictor(model, channels_last=False), [tmp_path / "s.png"], tmp_path / "out",
                               workers=0, say=lambda _: None)
    assert result.failures == [] and result.done == 1
    assert Image.open(tmp_path / "out" / "s.mask.png").size == (w, h)  # every pixel
    overlay = Image.open(tmp_path / "out" / "s.overlay.jpg")
    assert max(overlay.size) == JPEG_MAX_SIDE and min(overlay.size) == 2  # scaled to what JPEG can hold


def test_serve_overlay_of_a_strip() -> None:
    pytest.importorskip("fastapi")
    from fcnkit.serve.app import _jpeg

    data = _jpeg(Image.new("RGB", (70000, 3), (200, 10, 10)))
    assert Image.open(io.BytesIO(data)).size == (65500, 3)


# --- files that are not models ------------------------------------------------------------
def _not_models(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = tmp_path / "good.pt"
    save_model(create_model("fcn32s", num_classes=2, width=1 / 16), good)
    data = good.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    torch.save({"when": datetime.datetime(2026, 1, 1)}, tmp_path / "object.pt")  # beyond weights_only
    with zipfile.ZipFile(tmp_path / "other.pt", "w") as z:
        z.writestr("notes.txt", "hello")
    torch.save({"w": torch.zeros(2)}, tmp_path / "state.pt")
    (tmp_path / "r.safetensors").write_text("not safetensors")
    (tmp_path / "bitflip.pt").write_bytes(_flip_a_weight_byte(data))
    return {
        "README": (README, "not a torch.save file (it starts with b'# fc')"),
        "truncated": (tmp_path / "truncated.pt", "truncated or damaged torch.save archive"),
        "object": (tmp_path / "object.pt", "holds Python objects besides tensors and plain data"),
        "zip": (tmp_path / "other.pt", "a zip archive, but not one written by torch.save"),
        "state dict": (tmp_path / "state.pt", f"without fcnkit's {FORMAT!r} record"),
        "safetensors": (tmp_path / "r.safetensors", "unreadable safetensors"),
        "bitflip": (tmp_path / "bitflip.pt", "damaged torch.save archive (archive/data/"),
    }


def _flip_a_weight_byte(data: bytes) -> bytes:
    """``data`` (a torch.save zip) with one bit changed inside its largest tensor: the zip
    structure is intact, so only the member's CRC-32 can tell."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        member = max(z.infolist(), key=lambda i: i.file_size)
    at = member.header_offset  # local header: 30 bytes, then the name and an extra field
    start = at + 30 + int.from_bytes(data[at + 26:at + 28], "little") + int.from_bytes(data[at + 28:at + 30], "little")
    flipped = bytearray(data)
    flipped[start + member.file_size // 2] ^= 0x10
    return bytes(flipped)


def _one_clean_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and "weights_only" not in text.replace("weights_only=True", "")
    cause = error.__cause__ or error.__context__
    assert cause is None or "weights_only" not in str(cause), "torch's advice travels along as the cause"
    return text


@pytest.mark.parametrize("kind", ["README", "truncated", "object", "zip", "state dict", "safetensors", "bitflip"])
def test_load_says_what_a_file_is_not(kind, tmp_path) -> None:
    from fcnkit.engine.checkpoint import load_checkpoint
    from fcnkit.inference.runtime import open_model

    path, reason = _not_models(tmp_path)[kind]
    for loader in (load, load_checkpoint, open_model):
        with pytest.raises(ValueError) as e:
            loader(path)
        text = _one_clean_line(e.value)
        assert text.startswith(f"{path}: not a fcnkit model (.pt checkpoint or .safetensors): "), text
        assert reason in text, text


def test_weights_file_errors_do_not_advise_unsafe_loading(tmp_path) -> None:
    from fcnkit.models.weights import load_state_dict_file

    torch.save({"when": datetime.datetime(2026, 1, 1)}, tmp_path / "w.pth")
    with pytest.raises(ValueError) as e:
        load_state_dict_file(tmp_path / "w.pth")
    assert _one_clean_line(e.value).startswith(f"{tmp_path / 'w.pth'}: not a weights file")


def test_an_onnx_or_xml_that_is_not_one(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from fcnkit.inference.runtime import open_model

    (tmp_path / "m.onnx").write_bytes(README.read_bytes())
    with pytest.raises(ValueError) as e:
        open_model(tmp_path / "m.onnx")
    assert _one_clean_line(e.value) == (f"{tmp_path / 'm.onnx'}: not an ONNX model ONNX Runtime can load: "
                                        f"INVALID_PROTOBUF: Protobuf parsing failed.")
    (tmp_path / "m.xml").write_bytes(README.read_bytes())
    (tmp_path / "m.json").write_text("{}")
    with pytest.raises(ValueError) as e:
        open_model(tmp_path / "m.xml")
    assert _one_clean_line(e.value).startswith(f"{tmp_path / 'm.xml'}: not an OpenVINO IR (no <net> element; "
                                               f"it starts with b'# fcnkit")
    (tmp_path / "n.xml").write_text('<?xml version="1.0"?>\n<net name="x" version="11"></net>\n')
    with pytest.raises(FileNotFoundError, match=r"n.bin: missing weights of the OpenVINO IR n.xml"):
        open_model(tmp_path / "n.xml")


def test_predict_cli_on_a_readme(tmp_path, capsys) -> None:
    from fcnkit.cli import main

    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    assert main(["predict", str(README), str(tmp_path / "x.png"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"fcnkit predict: error: {README}: not a fcnkit model (.pt checkpoint or .safetensors): "
                   f"not a torch.save file (it starts with b'# fc')")
