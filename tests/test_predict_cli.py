"""``fcnkit predict``: outputs per image, bad files reported and skipped, no overwrite, no escape."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcnkit.cli import main
from fcnkit.inference.outputs import safe_name
from fcnkit.inference import Predictor
from fcnkit.models.saved import save_model
from predict_fixtures import PALETTE, scene


def _folder(root: Path) -> Path:
    """in/a.png (33x97), in/sub/b.jpg (40x50), in/broken.png (truncated), in/notes.txt."""
    (root / "in" / "sub").mkdir(parents=True)
    Image.fromarray(scene(33, 97, seed=1)).save(root / "in" / "a.png")
    Image.fromarray(scene(40, 50, seed=2)).save(root / "in" / "sub" / "b.jpg", quality=95)
    good = (root / "in" / "a.png").read_bytes()
    (root / "in" / "broken.png").write_bytes(good[: len(good) // 2])
    (root / "in" / "notes.txt").write_text("not an image\n")
    return root / "in"


def test_folder_with_corrupt_file(model_file, tmp_path, capsys) -> None:
    folder = _folder(tmp_path)
    out = tmp_path / "out"
    code = main(["predict", str(model_file), str(folder), "--out", str(out), "--probs", "--workers", "1"])
    assert code == 1
    err = capsys.readouterr().err
    assert "2 input(s) skipped" in err
    assert f"{folder / 'broken.png'}: corrupt or truncated image" in err
    assert f"{folder / 'notes.txt'}: not an image file" in err
    # the readable images were still processed, at exactly their own size
    mask = Image.open(out / "a.mask.png")
    assert mask.mode == "P" and mask.size == (97, 33)
    assert mask.getpalette()[:9] == [v for c in PALETTE for v in c]
    expected = Predictor(model_file, channels_last=False, amp="off").predict(folder / "a.png").mask
    assert np.array_equal(np.asarray(mask), expected)
    assert Image.open(out / "sub" / "b.overlay.jpg").size == (50, 40)
    probs = np.load(out / "sub" / "b.probs.npy")
    assert probs.dtype == np.float16 and probs.shape == (3, 40, 50)
    assert not (out / "broken.mask.png").exists() and not list(out.rglob("*fcnkit-tmp*"))


def test_existing_outputs_are_not_overwritten_without_the_flag(model_file, tmp_path, capsys) -> None:
    Image.fromarray(scene(30, 40, seed=3)).save(tmp_path / "x.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "x.mask.png").write_bytes(b"precious")
    assert main(["predict", str(model_file), str(tmp_path / "x.png"), "--out", str(out), "--workers", "0"]) == 1
    assert (out / "x.mask.png").read_bytes() == b"precious"
    assert not (out / "x.overlay.jpg").exists()
    assert "use --overwrite" in capsys.readouterr().err
    assert main(["predict", str(model_file), str(tmp_path / "x.png"), "--out", str(out), "--workers", "0",
                 "--overwrite"]) == 0
    assert Image.open(out / "x.mask.png").size == (40, 30)


def test_globs_tiles_and_name_collisions(model_file, tmp_path) -> None:
    Image.fromarray(scene(300, 200, seed=4)).save(tmp_path / "p.png")
    Image.fromarray(scene(20, 30, seed=5)).save(tmp_path / "p.jpg")
    out = tmp_path / "out"
    code = main(["predict", str(model_file), str(tmp_path / "p.*"), "--out", str(out), "--workers", "0",
                 "--tile", "128", "--overlap", "32"])
    assert code == 0
    # a.png and a.jpg would share a stem, so both keep their suffix in the name
    assert Image.open(out / "p.png.mask.png").size == (200, 300)
    assert Image.open(out / "p.jpg.mask.png").size == (30, 20)


def test_unmatched_inputs_and_bad_model(model_file, tmp_path, capsys) -> None:
    code = main(["predict", str(model_file), str(tmp_path / "none.png"), str(tmp_path / "*.nope"),
                 "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    err = captured.err
    assert code == 1 and "no such file or folder" in err and "pattern matched no files" in err
    # 26.9: it named runs/predict/1, a folder it never made
    assert "predicted 0 of 2 inputs (nothing written)" in captured.out and not (tmp_path / "out").exists()
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert main(["predict", str(tmp_path / "junk.pt"), str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "junk.pt" in capsys.readouterr().err


@pytest.mark.parametrize("hostile", ["../../etc/passwd", "/abs/x", "a/../../b", "..", ".hidden", "x\ny", "C:\\w\\..\\z",
                                     "..\\..\\evil"])
def test_safe_name_stays_inside(tmp_path, hostile) -> None:
    out = tmp_path / "out"
    name = safe_name(Path(hostile))
    assert not name.is_absolute() and ".." not in name.parts
    assert all(not part.startswith(".") for part in name.parts)
    assert (out / name).resolve().is_relative_to(out.resolve())


def test_output_cannot_escape_through_a_symlinked_folder(model_file, tmp_path, capsys) -> None:
    (tmp_path / "in" / "sub").mkdir(parents=True)
    Image.fromarray(scene(20, 20)).save(tmp_path / "in" / "sub" / "x.png")
    Image.fromarray(scene(20, 20)).save(tmp_path / "in" / "y.png")
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    os.symlink(outside, out / "sub")  # out/sub -> ../outside
    code = main(["predict", str(model_file), str(tmp_path / "in"), "--out", str(out), "--workers", "0"])
    assert code == 1 and "would be outside" in capsys.readouterr().err
    assert list(outside.iterdir()) == []
    assert (out / "y.mask.png").exists()


def test_probabilities_go_to_disk_and_outputs_are_world_readable(model_file, tmp_path) -> None:
    Image.fromarray(scene(300, 260, seed=6)).save(tmp_path / "big.png")
    out = tmp_path / "out"
    code = main(["predict", str(model_file), str(tmp_path / "big.png"), "--out", str(out), "--workers", "0",
                 "--probs", "--tile", "128"])
    assert code == 0
    probs = np.load(out / "big.probs.npy")
    assert probs.dtype == np.float16 and probs.shape == (3, 300, 260)
    expected = Predictor(model_file, tile=128, channels_last=False, amp="off").predict(tmp_path / "big.png", probabilities=True)
    assert np.array_equal(probs, expected.probabilities)
    agree = probs.argmax(0) == np.asarray(Image.open(out / "big.mask.png"))
    assert agree.mean() > 0.99  # float16 probabilities can tie where float32 logits did not
    umask = os.umask(0)
    os.umask(umask)
    for f in out.iterdir():
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, f
    assert not [f for f in out.iterdir() if f.name.startswith(".")]


def test_detection_model_writes_json_and_boxes(tmp_path) -> None:
    import json

    import torch

    from fcnkit import create_model

    torch.manual_seed(0)
    joint = create_model("fcn8s_joint", num_classes=3, det_classes=1, width=1 / 16)
    save_model(joint, tmp_path / "joint.pt", classes=["a", "b", "c"])
    Image.fromarray(scene(61, 83)).save(tmp_path / "x.png")
    # an untrained head scores every peak near its 0.01 prior: below the default threshold of 0.3
    assert main(["predict", str(tmp_path / "joint.pt"), str(tmp_path / "x.png"), "--out", str(tmp_path / "o1"),
                 "--workers", "0"]) == 0
    assert json.loads((tmp_path / "o1" / "x.detections.json").read_text())["detections"] == []
    # a threshold recommended by the model file, or given, lets them through
    save_model(joint, tmp_path / "joint_conf.pt", classes=["a", "b", "c"], conf=0.005)
    assert main(["predict", str(tmp_path / "joint_conf.pt"), str(tmp_path / "x.png"), "--out",
                 str(tmp_path / "o2"), "--workers", "0"]) == 0
    recommended = json.loads((tmp_path / "o2" / "x.detections.json").read_text())["detections"]
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "joint.pt"), str(tmp_path / "x.png"), "--out", str(out),
                 "--workers", "0", "--conf", "0.005"]) == 0
    data = json.loads((out / "x.detections.json").read_text())
    assert data["size"] == [61, 83] and data["detections"] and data["detections"] == recommended
    assert all(d["score"] >= 0.005 for d in data["detections"])
    for det in data["detections"]:
        x0, y0, x1, y1 = det["box"]
        assert 0 <= x0 <= x1 <= 83 and 0 <= y0 <= y1 <= 61 and det["label"] == 0 and 0 < det["score"] <= 1
    assert Image.open(out / "x.mask.png").size == (83, 61)
    assert Image.open(out / "x.overlay.jpg").size == (83, 61)


def test_names_that_sanitise_alike_do_not_overwrite_each_other(model_file, tmp_path, capsys) -> None:
    (tmp_path / "in").mkdir()
    Image.fromarray(scene(20, 24, seed=1)).save(tmp_path / "in" / "a b.png")
    Image.fromarray(scene(22, 26, seed=2)).save(tmp_path / "in" / "a_b.png")
    out = tmp_path / "out"
    assert main(["predict", str(model_file), str(tmp_path / "in"), "--out", str(out), "--workers", "0"]) == 1
    assert "already used by" in capsys.readouterr().err
    assert Image.open(out / "a_b.png.mask.png").size == (24, 20)  # the first one ("a b.png"), kept


def test_one_library_call_writes_what_the_cli_writes(model_file, tmp_path, capsys) -> None:
    """``predict_to_folder`` is ``fcnkit predict`` for Python users: the same files, byte for byte."""
    from fcnkit.inference.outputs import predict_to_folder

    folder = _folder(tmp_path)
    assert main(["predict", str(model_file), str(folder), "--out", str(tmp_path / "cli"), "--probs",
                 "--workers", "0"]) == 1
    result = predict_to_folder(Predictor(model_file), [folder], tmp_path / "lib", probs=True, workers=0)
    assert (result.done, result.total) == (2, 4)
    assert sorted(str(f.path.name) for f in result.failures) == ["broken.png", "notes.txt"]
    cli = sorted(p.relative_to(tmp_path / "cli") for p in (tmp_path / "cli").rglob("*") if p.is_file())
    lib = sorted(p.relative_to(tmp_path / "lib") for p in (tmp_path / "lib").rglob("*") if p.is_file())
    assert cli == lib and len(cli) == 6  # mask, overlay, probs for a.png and sub/b.jpg
    for rel in cli:
        assert (tmp_path / "cli" / rel).read_bytes() == (tmp_path / "lib" / rel).read_bytes(), rel


def test_no_output_folder_when_no_input_exists(model_file, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["predict", str(model_file), str(tmp_path / "missing.png"), "--out", str(out)]) == 1
    assert not out.exists()


def test_default_output_folder_is_the_next_runs_predict_n(model_file, tmp_path, capsys, monkeypatch) -> None:
    """Without --out (as YOLO does): ./runs/predict/1, then 2, ...; printed; none made for no input."""
    Image.fromarray(scene(20, 30)).save(tmp_path / "x.png")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert main(["predict", str(model_file), str(tmp_path / "missing.png"), "--workers", "0"]) == 1
    assert not Path("runs").exists()  # nothing to read: no output folder either
    capsys.readouterr()
    for n in (1, 2):
        assert main(["predict", str(model_file), str(tmp_path / "x.png"), "--workers", "0", "--quiet"]) == 0
        assert f"predicted 1 of 1 inputs -> {Path('runs', 'predict', str(n))}" in capsys.readouterr().out
        assert Image.open(Path("runs", "predict", str(n), "x.mask.png")).size == (30, 20)
    assert sorted(p.name for p in model_file.parent.iterdir()) == ["colour.pt"]
