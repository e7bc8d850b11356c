"""`fcnkit data check|stats|fetch` on tiny datasets and a local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import re
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import data_dir
from PIL import Image
from test_data_fixtures import save_png, write_camvid

from fcnkit.cli import main
from fcnkit.data import fetch as fetch_module
from fcnkit.data.fetch import Source, download, unpack
from fcnkit.losses import load_class_weights


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's content and mtime: checking must leave both untouched."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
            if p.is_file()}


# ---------------------------------------------------------------- check

def test_check_clean_dataset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    written = write_camvid(tmp_path, {"train": 3, "val": 2})
    assert main(["data", "check", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "format camvid" in out and "split train  3 samples, 3 read cleanly" in out
    assert "split val    2 samples, 2 read cleanly" in out and "16x12 (WxH): 5" in out
    void = sum(int((w == 11).sum()) for split in written.values() for w in split)
    sky = sum(int((w == 0).sum()) for split in written.values() for w in split)
    assert re.search(rf"^\s+255 \(ignore\)\s+{void:,}\s", out, re.M)
    assert re.search(rf"^\s+0 Sky\s+{sky:,}\s", out, re.M)
    assert "no problems found" in out


def test_check_reports_every_problem_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_camvid(tmp_path, {"train": 6, "val": 1})
    names = [f"0001TP_{i:06d}.png" for i in range(6)]
    data = (tmp_path / "train" / names[0]).read_bytes()
    (tmp_path / "train" / names[0]).write_bytes(data[: len(data) // 2])  # truncated image
    save_png(tmp_path / "trainannot" / names[1], np.full((12, 16), 40, np.uint8))  # bad label value
    save_png(tmp_path / "trainannot" / names[2], np.zeros((11, 16), np.uint8))  # size mismatch
    (tmp_path / "trainannot" / names[3]).unlink()  # missing pair
    rgba = np.zeros((12, 16, 4), np.uint8)
    save_png(tmp_path / "train" / names[4], rgba)  # fully transparent
    before = _snapshot(tmp_path)
    assert main(["data", "check", str(tmp_path), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "5 problem(s):" in out
    assert f"train/{names[0]}: corrupt or truncated image" in out
    assert f"trainannot/{names[1]}: label values [40] are not CamVid classes" in out
    assert f"trainannot/{names[2]}: label map is 16x11 (WxH) but its image" in out
    assert f"train/{names[3]}: no annotation" in out
    assert f"train/{names[4]}: image has transparent pixels" in out
    assert "split train  5 samples, 1 read cleanly" in out
    assert _snapshot(tmp_path) == before


def test_check_format_flag_and_unrecognised(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_camvid(tmp_path, {"val": 1})
    assert main(["data", "check", str(tmp_path), "--format", "camvid", "--split", "val", "--no-progress"]) == 0
    (tmp_path / "empty").mkdir()
    assert main(["data", "check", str(tmp_path / "empty"), "--no-progress"]) == 2
    assert "cannot recognise the dataset layout" in capsys.readouterr().err
    (tmp_path / "e" / "trainannot").mkdir(parents=True)
    (tmp_path / "e" / "train").mkdir()
    assert main(["data", "check", str(tmp_path / "e"), "--no-progress"]) == 1
    assert "split 'train' is empty" in capsys.readouterr().out


def test_check_reports_image_in_two_splits(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_camvid(tmp_path, {"train": 2, "val": 1}, list_files=True)
    with open(tmp_path / "val.txt", "a") as f:
        f.write("train/0001TP_000001.png trainannot/0001TP_000001.png\n")
    assert main(["data", "check", str(tmp_path), "--no-progress"]) == 1
    assert "train/0001TP_000001.png: in both the train and val splits" in capsys.readouterr().out


def test_check_real_camvid_val(capsys: pytest.CaptureFixture) -> None:
    root = data_dir("camvid")
    assert main(["data", "check", str(root), "--split", "val", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "split val    101 samples, 101 read cleanly" in out and "480x360 (WxH): 101" in out


def test_check_real_raccoon(capsys: pytest.CaptureFixture) -> None:
    root = data_dir("raccoon")
    assert main(["data", "check", str(root), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "format voc_xml, detection, 1 class)" in out and "split all    160 samples, 160 read cleanly" in out
    assert re.search(r"^\s+0 raccoon\s+173\s", out, re.M)


# ---------------------------------------------------------------- stats

def test_stats_median_frequency_weights(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # image A: c0 x3, c1 x1; image B: c1 x2, c2 x1, ignore x1
    # freq0 = 3/4, freq1 = 3/8, freq2 = 1/4; median 3/8 -> weights 0.5, 1, 1.5; c3 absent -> 0
    save_png(tmp_path / "images" / "a.png", np.zeros((2, 2, 3), np.uint8))
    save_png(tmp_path / "images" / "b.png", np.zeros((2, 2, 3), np.uint8))
    save_png(tmp_path / "masks" / "a.png", np.array([[0, 0], [0, 1]], np.uint8))
    save_png(tmp_path / "masks" / "b.png", np.array([[1, 1], [2, 255]], np.uint8))
    (tmp_path / "classes.yaml").write_text("classes: [a, b, c, d]\n")
    out_file = tmp_path / "out" / "weights.json"
    assert main(["data", "stats", f"folder:{tmp_path}", "--split", "all", "--out", str(out_file),
                 "--no-progress"]) == 0
    stats = json.loads(out_file.read_text())
    assert stats["pixels"] == [3, 3, 1, 0] and stats["image_pixels"] == [4, 8, 4, 0]
    assert stats["ignored_pixels"] == 1 and stats["median_frequency"] == 0.375
    assert stats["class_weights"] == [0.5, 1.0, 1.5, 0.0]
    assert load_class_weights(out_file, 4).tolist() == [0.5, 1.0, 1.5, 0.0]  # what training reads
    assert "wrote" in capsys.readouterr().out


def test_stats_refuses_detection(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from test_data_fixtures import write_voc_xml

    write_voc_xml(tmp_path, n=2)
    assert main(["data", "stats", str(tmp_path), "--split", "all", "--no-progress"]) == 2
    assert "need a segmentation dataset" in capsys.readouterr().err


# ---------------------------------------------------------------- fetch

class _Server:
    """A 127.0.0.1 HTTP server for one file, optionally honouring Range requests."""

    def __init__(self, payload: bytes, *, ranges: bool = True) -> None:
        self.payload, self.ranges, self.requests = payload, ranges, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                rng = self.headers.get("Range")
                server.requests.append(rng)
                body, status = server.payload, 200
                if rng and server.ranges:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.end_headers()
                        return
                    body, status = body[start:], 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/tiny.tar.gz"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "_Server":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _tiny_archive() -> bytes:
    """A tar.gz holding a tiny CamVid folder (so the result is checkable end to end)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        rng = np.random.default_rng(0)
        for sub, arr in (("val", rng.integers(0, 255, (4, 6, 3), dtype=np.uint8)),
                         ("valannot", rng.integers(0, 12, (4, 6), dtype=np.uint8))):
            png = io.BytesIO()
            Image.fromarray(arr).save(png, format="PNG")
            info = tarfile.TarInfo(f"CamVid/{sub}/x.png")
            info.size = len(png.getvalue())
            tar.addfile(info, io.BytesIO(png.getvalue()))
        filler = tarfile.TarInfo("CamVid/README")
        noise = rng.integers(0, 255, 200_000, dtype=np.uint8).tobytes()  # big enough to split
        filler.size = len(noise)
        tar.addfile(filler, io.BytesIO(noise))
    return buf.getvalue()


@pytest.fixture
def tiny_source(monkeypatch: pytest.MonkeyPatch):
    payload = _tiny_archive()
    digest = "sha256:" + hashlib.sha256(payload).hexdigest()
    monkeypatch.setitem(fetch_module.SOURCES, "camvid", Source("http://unused.invalid/x", "tiny.tar.gz", digest))
    return payload, digest


def test_fetch_downloads_verifies_and_unpacks(tmp_path: Path, tiny_source, capsys) -> None:
    payload, digest = tiny_source
    with _Server(payload) as server:
        code = main(["data", "fetch", "camvid", "--to", str(tmp_path), "--url", server.url, "--no-progress"])
    assert code == 0 and server.requests == [None]
    out = capsys.readouterr().out
    assert f"verified {digest}" in out and f"unpacked {tmp_path.resolve() / 'CamVid'}" in out
    assert not (tmp_path / "tiny.tar.gz").exists() and not (tmp_path / "tiny.tar.gz.part").exists()
    assert main(["data", "check", str(tmp_path / "CamVid"), "--no-progress"]) == 0


@pytest.mark.parametrize("ranges", [True, False])
def test_fetch_resumes_partial_download(tmp_path: Path, tiny_source, ranges: bool) -> None:
    payload, digest = tiny_source
    cut = len(payload) // 3
    (tmp_path / "tiny.tar.gz.part").write_bytes(payload[:cut])
    with _Server(payload, ranges=ranges) as server:
        got = download(server.url, tmp_path / "tiny.tar.gz", checksum=digest, progress=False)
    assert got == digest and server.requests == [f"bytes={cut}-"]
    assert (tmp_path / "tiny.tar.gz").read_bytes() == payload  # appended (206) or restarted (200)


def test_fetch_complete_part_file_gets_416_and_finishes(tmp_path: Path, tiny_source) -> None:
    payload, digest = tiny_source
    (tmp_path / "tiny.tar.gz.part").write_bytes(payload)
    with _Server(payload) as server:
        assert download(server.url, tmp_path / "tiny.tar.gz", checksum=digest, progress=False) == digest


def test_fetch_checksum_mismatch_removes_download(tmp_path: Path, tiny_source, capsys) -> None:
    payload, _ = tiny_source
    with _Server(payload) as server:
        code = main(["data", "fetch", "camvid", "--to", str(tmp_path), "--url", server.url,
                     "--checksum", "sha256:" + "0" * 64, "--no-progress"])
    assert code == 2 and "checksum mismatch" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_fetch_unreachable_server(tmp_path: Path, tiny_source, capsys) -> None:
    code = main(["data", "fetch", "camvid", "--to", str(tmp_path), "--url", "http://127.0.0.1:9/x",
                 "--no-progress"])
    assert code == 2 and "cannot connect" in capsys.readouterr().err


def test_unpack_refuses_path_traversal(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as z:
        z.writestr("../escaped.txt", "x")
    with pytest.raises(RuntimeError, match="outside"):
        unpack(tmp_path / "evil.zip", tmp_path / "out")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    (tmp_path / "evil.tar").write_bytes(buf.getvalue())
    with pytest.raises(RuntimeError, match="unsafe member"):
        unpack(tmp_path / "evil.tar", tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()
    assert os.listdir(tmp_path / "out") == []
