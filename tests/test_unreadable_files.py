"""One odd file (a symbolic link loop, a broken link, a name that is not UTF-8) is a problem of
that file: scanners report it and go on, and printing its name never raises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcnkit.data.check import check_dataset

ODD = os.fsdecode(b"\xff.png")  # a file name that is not UTF-8 (a surrogate escape in Python)


def _pair(root: Path, stem: str) -> None:
    Image.fromarray(np.full((8, 12, 3), 40, np.uint8)).save(root / "images" / f"{stem}.png")
    Image.fromarray(np.ones((8, 12), np.uint8)).save(root / "masks" / f"{stem}.png")


def _folder(root: Path, *, image_loop: bool = True, mask_loop: bool = True, odd: bool = True) -> Path:
    """images/ + masks/ with a0..a2 paired, plus odd files."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(3):
        _pair(root, f"a{i}")
    if image_loop:  # an image that is a link to itself, with a real mask
        os.symlink("loop.png", root / "images" / "loop.png")
        Image.fromarray(np.ones((8, 12), np.uint8)).save(root / "masks" / "loop.png")
    if mask_loop:  # a real image whose mask is a link loop
        Image.fromarray(np.zeros((8, 12, 3), np.uint8)).save(root / "images" / "mloop.png")
        os.symlink("mloop.png", root / "masks" / "mloop.png")
    if odd:  # an image without a mask, named in bytes that are not UTF-8
        Image.fromarray(np.zeros((8, 12, 3), np.uint8)).save(root / "images" / ODD)
    return root


def test_check_reports_link_loops_as_problems_of_their_files(tmp_path) -> None:
    root = _folder(tmp_path / "ds")
    report = check_dataset(f"folder:{root}", progress=False)
    assert report.listed == {"all": 3} and report.counts == {"all": 3}  # the good samples all read
    assert f"{root / 'images' / 'loop.png'}: symbolic link loop" in report.errors
    assert f"{root / 'masks' / 'mloop.png'}: symbolic link loop" in report.errors
    text = report.format_text()
    text.encode("utf-8")  # strict: no surrogates left
    assert f"{root / 'images'}/\\xff.png: no annotation" in text


@pytest.mark.parametrize("which", ["image_loop", "mask_loop"])
def test_one_loop_alone_does_not_stop_the_check(which, tmp_path) -> None:
    flags = {"image_loop": False, "mask_loop": False, "odd": False, which: True}
    report = check_dataset(f"folder:{_folder(tmp_path / 'ds', **flags)}", progress=False)
    assert report.counts == {"all": 3}
    # the loop, and its partner left without one
    assert len(report.errors) == 2 and report.errors[0].endswith("loop.png: symbolic link loop")


def test_data_check_cli_prints_the_whole_report_with_a_non_utf8_name(tmp_path) -> None:
    root = _folder(tmp_path / "ds")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.run([sys.executable, "-m", "fcnkit", "data", "check", f"folder:{root}", "--no-progress"],
                          capture_output=True, env=env, timeout=300)
    out, err = proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 1, err  # problems found, report printed
    assert "Traceback" not in err
    assert "split all    3 samples, 3 read cleanly" in out
    assert "\\xff.png: no annotation" in out and "loop.png: symbolic link loop" in out


def test_voc_xml_with_a_looped_annotation(tmp_path) -> None:
    from fcnkit.data.voc_xml import VOCDetection

    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    Image.new("RGB", (20, 10)).save(tmp_path / "images" / "a.jpg")
    (tmp_path / "annotations" / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
        "<xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>")
    os.symlink("b.xml", tmp_path / "annotations" / "b.xml")
    with pytest.warns(UserWarning):
        ds = VOCDetection(tmp_path, "train", val_fraction=0.0)
    assert len(ds) == 1 and ds.classes == ["cat"]
    assert ds.problems == [f"{tmp_path / 'annotations' / 'b.xml'}: symbolic link loop"]


def test_image_readers_name_the_reason(tmp_path) -> None:
    from fcnkit.data.image_io import DataError, read_image_tensor
    from fcnkit.inference.images import ImageReadError, read_rgb_array as read_input

    os.symlink("x.png", tmp_path / "x.png")
    os.symlink("gone.png", tmp_path / "dangling.png")
    with pytest.raises(DataError, match="x.png: symbolic link loop"):
        read_image_tensor(tmp_path / "x.png")
    with pytest.raises(ImageReadError, match="x.png: symbolic link loop"):
        read_input(tmp_path / "x.png")
    with pytest.raises(ImageReadError, match=r"dangling.png: broken symbolic link \(to gone.png\)"):
        read_input(tmp_path / "dangling.png")
    with pytest.raises(FileNotFoundError, match="nothing.png: no such file"):
        read_image_tensor(tmp_path / "nothing.png")


def test_collect_inputs_reports_links_it_cannot_follow(tmp_path) -> None:
    from fcnkit.inference.images import collect_inputs

    (tmp_path / "in").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "in" / "ok.png")
    os.symlink("loop.png", tmp_path / "in" / "loop.png")
    os.symlink("gone.png", tmp_path / "in" / "dangling.png")
    found, missing = collect_inputs([str(tmp_path / "in"), str(tmp_path / "in" / "loop.png")])
    assert [f.path.name for f in found] == ["ok.png"]
    assert missing == [(str(tmp_path / "in" / "dangling.png"), "broken symbolic link (to gone.png)"),
                       (str(tmp_path / "in" / "loop.png"), "symbolic link loop")]  # once, though named twice


def test_predicting_a_folder_skips_loops_with_a_reason_and_reads_odd_names(tmp_path, capsys) -> None:
    from fcnkit.cli import main
    from fcnkit.models.saved import save_model
    from predict_fixtures import PALETTE, colour_fcn, scene

    save_model(colour_fcn(), tmp_path / "m.pt", classes=["r", "g", "b"], palette=PALETTE)
    (tmp_path / "in").mkdir()
    Image.fromarray(scene(20, 30)).save(tmp_path / "in" / "ok.png")
    Image.fromarray(scene(20, 30, seed=1)).save(tmp_path / "in" / ODD)
    os.symlink("loop.png", tmp_path / "in" / "loop.png")
    code = main(["predict", str(tmp_path / "m.pt"), str(tmp_path / "in"), str(tmp_path / "in" / "loop.png"),
                 "--out", str(tmp_path / "out"), "--workers", "0"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"{tmp_path / 'in' / 'loop.png'}: symbolic link loop" in err
    assert (tmp_path / "out" / "ok.mask.png").is_file() and (tmp_path / "out" / "_.mask.png").is_file()
