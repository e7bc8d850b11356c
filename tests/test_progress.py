"""Progress: a bar on a terminal; in pipes, files and CI logs plain periodic lines (no ``\\r``
redraws piling up on one line); nothing with ``--quiet`` / ``progress=False``."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

from fcnkit.inference import Predictor
from fcnkit.io import next_run_dir, plural
from fcnkit.models.saved import save_model
from fcnkit.progress import LineProgress, Silent, progress_bar
from predict_fixtures import PALETTE, colour_fcn, scene


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_progress_is_plain_lines_with_count_rate_and_eta():
    log = io.StringIO()
    for _ in progress_bar(range(4), desc="eval", unit="img", file=log, interval=0):
        pass
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 5  # one per step (interval 0) and a final one
    assert re.fullmatch(r"eval: 2/4 img \(50%\), [\d.,e+]+ img/s, ETA \d+ s", lines[1]), lines[1]
    assert re.fullmatch(r"eval: 4/4 img \(100%\), [\d.,e+]+ img/s, done in \d+ s", lines[-1]), lines[-1]


def test_lines_are_periodic_not_per_step():
    log = io.StringIO()
    bar = progress_bar(total=1000, desc="x", file=log, interval=3600)
    for _ in range(1000):
        bar.update()
    assert log.getvalue() == ""  # nothing within the interval ...
    bar.close()
    assert log.getvalue().count("\n") == 1 and "1,000/1,000 it (100%)" in log.getvalue()  # ... then the summary


def test_bytes_postfix_unknown_total_and_transient_bars():
    log = io.StringIO()
    with progress_bar(total=4 * 2**20, initial=2**20, unit="B", unit_scale=True, unit_divisor=1024, desc="a.zip",
                      file=log, interval=0) as bar:
        bar.set_postfix(loss="0.5")
        bar.update(2**20)
    assert log.getvalue().startswith("a.zip: 2.00MB/4.00MB (50%), ") and log.getvalue().rstrip().endswith("loss 0.5")
    log = io.StringIO()
    with progress_bar(desc="clip.mp4", unit="frame", file=log, interval=0) as bar:
        bar.update(3)
    assert log.getvalue().startswith("clip.mp4: 3 frame, ") and "ETA" not in log.getvalue()
    log = io.StringIO()
    for _ in progress_bar(range(3), leave=False, file=log):  # short transient loop: not even a summary
        pass
    assert log.getvalue() == ""


def test_a_terminal_gets_a_bar_and_disabled_or_lines_off_show_nothing():
    tty = Terminal()
    for _ in progress_bar(range(3), desc="eval", file=tty):
        pass
    assert "\r" in tty.getvalue() and "3/3" in tty.getvalue()  # tqdm redraws in place
    log = io.StringIO()
    quiet = progress_bar(range(3), enabled=False, file=log)
    assert isinstance(quiet, Silent) and list(quiet) == [0, 1, 2] and quiet.disable
    own_lines = progress_bar(total=3, lines=False, file=log)  # the trainer logs its own lines off a terminal
    assert own_lines.disable and not isinstance(own_lines, LineProgress)
    own_lines.update(3)
    own_lines.set_postfix(loss=1)
    own_lines.close()
    assert log.getvalue() == ""
    assert not progress_bar(total=3, lines=False, file=Terminal()).disable


def _images(folder: Path, n: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i}.png" for i in range(n)]
    for i, p in enumerate(paths):
        Image.fromarray(scene(20, 30, seed=i)).save(p)
    return paths


def test_predictor_progress_false_silences_predict_many(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("FCNKIT_PROGRESS_INTERVAL", "0")
    paths = _images(tmp_path)
    assert len(list(Predictor(colour_fcn(), progress=False).predict_many(paths))) == 3
    assert capfd.readouterr().err == ""
    assert len(list(Predictor(colour_fcn()).predict_many(paths))) == 3
    err = capfd.readouterr().err
    assert "predict: 3/3 img (100%)" in err and "\r" not in err
    assert len(list(Predictor(colour_fcn()).predict_many(paths, progress=False))) == 3  # the call's word wins
    assert capfd.readouterr().err == ""


def test_piped_predict_prints_plain_progress_lines_and_quiet_prints_none(tmp_path):
    """The issue's case: ``fcnkit predict ... 2>&1 | tee log`` wrote one long line of ``\\r`` redraws."""
    model = tmp_path / "m.pt"
    save_model(colour_fcn(), model, classes=["red", "green", "blue"], palette=PALETTE)
    _images(tmp_path / "in", n=4)
    env = {**os.environ, "FCNKIT_PROGRESS_INTERVAL": "0"}
    runs = {}
    for flag in ([], ["--quiet"]):
        run = subprocess.run([sys.executable, "-m", "fcnkit", "predict", str(model), str(tmp_path / "in"),
                              "--workers", "0", *flag], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        runs[tuple(flag)] = run
    piped = runs[()].stderr
    assert "\r" not in piped
    progress = [line for line in piped.splitlines() if line.startswith("predict: ")]
    assert max(len(line) for line in progress) < 200  # one update per line (the probe's line may be longer)
    assert [line.split(" img")[0] for line in progress] == ["predict: 1/4", "predict: 2/4", "predict: 3/4",
                                                            "predict: 4/4", "predict: 4/4"]  # + the final line
    assert "predict" not in runs[("--quiet",)].stderr
    assert "-> runs/predict/1" in runs[()].stdout and "-> runs/predict/2" in runs[("--quiet",)].stdout


def test_next_run_dir_and_plural(tmp_path):
    assert next_run_dir("predict", tmp_path) == tmp_path / "predict" / "1"
    (tmp_path / "predict" / "1").mkdir(parents=True)
    (tmp_path / "predict" / "3").mkdir()
    assert next_run_dir("predict", tmp_path) == tmp_path / "predict" / "2"  # the first free N
    assert not (tmp_path / "predict" / "2").exists()  # nothing is created
    assert [plural(n, "class") for n in (0, 1, 2, 1500)] == ["0 classes", "1 class", "2 classes", "1,500 classes"]
    assert plural(1, "image") == "1 image" and plural(2, "box") == "2 boxes"
    from fcnkit.data.base import ImageDataset

    one = type("One", (ImageDataset,), {"classes": ["raccoon"]})([(tmp_path / "a.jpg", tmp_path / "a.xml")])
    assert repr(one) == "One(1 sample, 1 class)"
