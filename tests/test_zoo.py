"""Named weights: every entry checked against its real file; URL entries downloaded from loopback."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest
import torch

import fcnkit
from fcnkit.cli import main as cli_main
from fcnkit.heads import SEG
from fcnkit.models import zoo
from fcnkit.models.saved import FORMAT, read_record, save_model


@pytest.mark.parametrize("name", fcnkit.list_weights())
def test_entry_matches_its_file(name):
    entry = fcnkit.get_weights(name)
    path = entry.path()
    assert path.stat().st_size == entry.size_bytes
    assert zoo.sha256_of(path) == entry.sha256
    rec = read_record(name)  # the name resolves to the same file
    assert rec["format"] == FORMAT  # shipped in the current format (old files load, converted)
    spec, meta = rec["spec"], rec["meta"]
    assert spec["name"].replace("_", "-") == entry.model.replace("_", "-")
    assert spec["config"]["encoder"] == entry.encoder
    assert tuple(spec["classes"] or spec["box_classes"]) == entry.classes
    assert tuple(tuple(c) for c in meta.get("palette", ())) == entry.palette
    assert fcnkit.models.Preprocessing.from_dict(spec["preprocessing"]) == entry.preprocessing
    model = fcnkit.load(name)
    assert model.spec.heads == entry.heads and model.spec.label_names == entry.classes
    val = meta.get("val_metrics", {}) if "val" not in entry.trained_on else {}  # a release fit saw val
    # the trainer validates in padded batches, `fcnkit eval` (what the entry quotes) one image at a time:
    # segmentation agrees to 0.5; box mAP on 32 photos moves a little more with the padding
    tolerance = {"mean_iu": 0.5, "pixel_acc": 0.5, "mean_acc": 0.5, "fw_iu": 0.5, "map": 1.0, "ap50": 1.0}
    for key, tol in tolerance.items():
        if key in entry.metrics and key in val:
            assert abs(100 * val[key] - entry.metrics[key]) < tol, key


def test_packaged_weights_stay_small():
    files = [fcnkit.get_weights(n).path() for n in fcnkit.list_weights() if fcnkit.get_weights(n).file]
    assert sum(f.stat().st_size for f in files) <= 40e6
    assert all(f.suffix == ".safetensors" for f in files)


def test_name_works_where_a_file_does():
    name = fcnkit.list_weights()[0]
    predictor = fcnkit.Predictor(name, progress=False)
    result = predictor.predict(torch.zeros(3, 40, 56))
    assert result.mask.shape == (40, 56)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(FileNotFoundError, match="camvid-fcn8s-resnet18"):
        fcnkit.load("camvid-nonexistent")


@pytest.fixture
def served(tmp_path):
    """A tiny fcnkit model file served over HTTP on 127.0.0.1 (bounded: one test's lifetime)."""
    model = fcnkit.create_model("fcn32s", num_classes=2, width=1 / 16)
    src = tmp_path / "srv"
    src.mkdir()
    save_model(model, src / "tiny.safetensors", dtype=torch.float16, classes=["a", "b"], palette=[[0, 0, 0], [9, 9, 9]])
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(src))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/tiny.safetensors", src / "tiny.safetensors"
    server.shutdown()


def _entry(url: str, sha: str, size: int, name: str = "tiny-url") -> zoo.WeightsEntry:
    return zoo.WeightsEntry(name=name, heads={SEG}, model="fcn32s", encoder="vgg16", dataset="none",
                            classes=("a", "b"), palette=((0, 0, 0), (9, 9, 9)), preprocessing=fcnkit.models.IMAGENET,
                            metrics={}, licence="MIT", sha256=sha, size_bytes=size, url=url)


def test_url_entry_downloads_once_and_verifies(served, tmp_path, monkeypatch):
    url, original = served
    monkeypatch.setenv("FCNKIT_CACHE", str(tmp_path / "cache"))
    entry = _entry(url, zoo.sha256_of(original), original.stat().st_size)
    monkeypatch.setitem(zoo._WEIGHTS, entry.name, entry)
    model = fcnkit.load("tiny-url")
    assert model.spec.classes == ("a", "b")
    cached = entry.path()
    assert cached.parent == tmp_path / "cache" / "weights" and cached.read_bytes() == original.read_bytes()
    mtime = cached.stat().st_mtime_ns
    fcnkit.load("tiny-url")
    assert cached.stat().st_mtime_ns == mtime  # second use: no download


def test_url_entry_with_wrong_digest_keeps_nothing(served, tmp_path, monkeypatch):
    url, original = served
    monkeypatch.setenv("FCNKIT_CACHE", str(tmp_path / "cache"))
    entry = _entry(url, "0" * 64, original.stat().st_size, name="tiny-bad")
    with pytest.raises(RuntimeError, match="tiny-bad"):
        entry.path(progress=False)
    assert list((tmp_path / "cache" / "weights").glob("*")) == []


def test_unreachable_url_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FCNKIT_CACHE", str(tmp_path / "cache"))
    entry = _entry("http://127.0.0.1:9/none.safetensors", "0" * 64, 1, name="tiny-gone")
    with pytest.raises(RuntimeError, match="cannot download"):
        entry.path(progress=False)


def test_entry_needs_exactly_one_location():
    with pytest.raises(ValueError, match="exactly one"):
        zoo.WeightsEntry(name="x", heads={SEG}, model="fcn8s", encoder="vgg16", dataset="d", classes=(),
                         palette=(), preprocessing=fcnkit.models.IMAGENET, metrics={}, licence="", sha256="",
                         size_bytes=0)


def test_weights_command_lists_and_shows(capsys):
    assert cli_main(["weights"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in fcnkit.list_weights())
    name = fcnkit.list_weights()[0]
    assert cli_main(["weights", name]) == 0
    assert fcnkit.get_weights(name).sha256 in capsys.readouterr().out
    assert cli_main(["weights", "nope"]) == 2


def test_weights_names_cannot_leave_the_cache_and_an_unwritable_cache_is_named(tmp_path, monkeypatch):
    """Issue 25.13: a name with ../ wrote outside the cache; a read-only cache gave a raw OSError."""
    for bad in ("../escape", "a/b", ".hidden", "x..y"):
        with pytest.raises(ValueError, match="letters, digits"):
            _entry("http://127.0.0.1:9/x.safetensors", "0" * 64, 1, name=bad)
    with pytest.raises(ValueError, match="plain file name"):
        zoo.WeightsEntry(name="ok", heads={SEG}, model="fcn8s", encoder="vgg16", dataset="d", classes=(),
                         palette=(), preprocessing=fcnkit.models.IMAGENET, metrics={}, licence="", sha256="",
                         size_bytes=0, file="../../etc/passwd")
    locked = tmp_path / "ro"
    locked.mkdir()
    (locked / "weights").write_text("a file where the folder should be")
    monkeypatch.setenv("FCNKIT_CACHE", str(locked))
    entry = _entry("http://127.0.0.1:9/none.safetensors", "0" * 64, 1, name="tiny-ro")
    with pytest.raises(RuntimeError, match=r"cannot write the cache folder .*ro/weights.*set FCNKIT_CACHE"):
        entry.path(progress=False)
