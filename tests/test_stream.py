"""Live sources (issue 27.3): a stream served on 127.0.0.1, segmented as it comes; drops, ends, stalls, garbage."""

from __future__ import annotations

import http.server
import json
import threading
import time

import numpy as np
import pytest

from fcnkit.cli import main
from fcnkit.inference import Predictor
from fcnkit.inference.stream import is_live_source, predict_stream, source_name
from fcnkit.inference.video import video_info
from fcnkit.models.saved import save_model
from predict_fixtures import PALETTE, colour_fcn, scene

av = pytest.importorskip("av")
RATE, FRAMES = 25, 125  # a 5 s clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    """5 s of 48x64 frames at 25 fps as MPEG-TS: what a network camera sends."""
    path = tmp_path_factory.mktemp("clip") / "clip.ts"
    with av.open(str(path), "w", format="mpegts") as c:
        s = c.add_stream("mpeg2video", rate=RATE)
        s.height, s.width, s.pix_fmt = 48, 64, "yuv420p"
        for i in range(FRAMES):
            for packet in s.encode(av.VideoFrame.from_ndarray(scene(48, 64, seed=i % 40), format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path.read_bytes()


def serve(body: bytes, *, seconds: float = 0.0, stall_after: float | None = None):
    """An HTTP server on a free loopback port sending ``body`` over ``seconds`` (0: at once);
    with ``stall_after`` (a fraction) it goes silent after that much of the body."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.end_headers()
            chunks = [body[i:i + 188 * 20] for i in range(0, len(body), 188 * 20)]
            for k, chunk in enumerate(chunks):
                if stall_after is not None and k >= stall_after * len(chunks):
                    time.sleep(30)
                    return
                try:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return
                if seconds:
                    time.sleep(seconds / len(chunks))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/live.ts"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "m.pt"
    save_model(colour_fcn(), path, classes=["red", "green", "blue"], palette=PALETTE)
    return path


def test_live_sources_are_recognised_and_named(tmp_path, monkeypatch) -> None:
    for spec in ("0", "/dev/video2", "rtsp://cam.local:8554/live", "http://127.0.0.1:8000/a.ts", "udp://@:1234"):
        assert is_live_source(spec), spec
    for spec in ("clip.mp4", "photos/", "http.png", "12345"):
        assert not is_live_source(spec), spec
    assert source_name("0") == "camera0" and source_name("/dev/video2") == "camera2"
    (tmp_path / "7").write_bytes(b"a file named 7")  # a file of that name wins over camera 7
    monkeypatch.chdir(tmp_path)
    assert not is_live_source("7") and is_live_source("8")
    assert source_name("rtsp://cam.local:8554/live") == "cam.local_8554_live"


def test_a_stream_runs_until_max_frames_with_per_frame_outputs(clip, model_path, tmp_path, capsys) -> None:
    server, url = serve(clip, seconds=FRAMES / RATE)
    try:
        code = main(["predict", str(model_path), url, "--max-frames", "5", "--out", str(tmp_path / "out"), "--quiet"])
    finally:
        server.shutdown()
    assert code == 0, capsys.readouterr().err
    stem = source_name(url)
    assert len(list((tmp_path / "out" / f"{stem}.frames").glob("*.png"))) == 5
    lines = (tmp_path / "out" / f"{stem}.frames.jsonl").read_text().splitlines()
    assert [json.loads(t)["frame"] for t in lines] == list(range(5))
    n, _, size = video_info(tmp_path / "out" / f"{stem}.overlay.mp4")
    assert (n, size) == (5, (48, 64))
    assert "ended: max-frames" in capsys.readouterr().out


def test_a_slow_model_drops_frames_instead_of_falling_behind(clip, tmp_path) -> None:
    """The source sends 25 frames/s for 5 s; the model takes 0.15 s a frame: it must keep to
    the live picture (about 33 frames done), the rest dropped and counted, none queued."""
    predictor = Predictor(colour_fcn(), progress=False)
    fast = predictor.predict_batch
    predictor.predict_batch = lambda images, **kw: (time.sleep(0.15), fast(images, **kw))[1]
    server, url = serve(clip, seconds=FRAMES / RATE)
    try:
        run = predict_stream(predictor, url, tmp_path / "o.mp4", frames_json=tmp_path / "o.jsonl")
    finally:
        server.shutdown()
    assert run.ended == "end of stream" and run.decoded >= FRAMES - 1  # FFmpeg may hold back the last frame
    assert run.dropped > 50 and run.video.frames + run.dropped == run.decoded
    assert run.video.frames <= FRAMES / RATE / 0.15 + 3 and run.seconds < FRAMES / RATE + 2  # kept up
    times = [json.loads(t)["time"] for t in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert times == sorted(times) and times[-1] > 4.0  # it reached the end of the clip, not just its start


def test_a_stalled_stream_ends_with_a_message_and_keeps_what_was_written(clip, tmp_path) -> None:
    server, url = serve(clip, stall_after=0.5)
    try:
        t0 = time.monotonic()
        run = predict_stream(Predictor(colour_fcn(), progress=False), url, tmp_path / "o.mp4",
                             frames_dir=tmp_path / "f", stall=1.0)
    finally:
        server.shutdown()
    assert run.ended == "stalled: no frame for 1 s" and time.monotonic() - t0 < 10
    assert run.video.frames >= 1 and video_info(tmp_path / "o.mp4")[0] == run.video.frames
    assert len(list((tmp_path / "f").glob("*.png"))) == run.video.frames


def test_garbage_and_bad_options_are_clear_errors(model_path, tmp_path, capsys) -> None:
    server, url = serve(bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8)))
    try:
        code = main(["predict", str(model_path), url, "--out", str(tmp_path / "out"), "--quiet"])
    finally:
        server.shutdown()
    err = capsys.readouterr().err
    assert code == 1 and f"{url}:" in err and ("cannot open the stream" in err or "cannot decode" in err), err
    assert main(["predict", str(model_path), url, "--max-frames", "0"]) == 2
    assert "--max-frames must be >= 1" in capsys.readouterr().err
    assert main(["predict", str(model_path), url, "--duration", "nan"]) == 2
