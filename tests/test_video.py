"""Video in, overlay video out: frame count, rate and size preserved; bad videos reported."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from fcnkit.cli import main
from fcnkit.inference import Predictor
from fcnkit.inference.video import predict_video, video_info
from fcnkit.models.saved import save_model
from predict_fixtures import PALETTE, colour_fcn, scene

av = pytest.importorskip("av")


def make_video(path: Path, frames: int, h: int, w: int, rate: Fraction | int, codec: str = "mpeg4") -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        s.height, s.width, s.pix_fmt = h, w, "yuv420p"
        for i in range(frames):
            img = scene(h, w, seed=i)
            for packet in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(colour_fcn(), channels_last=False)


@pytest.mark.parametrize("frames, h, w, rate, codec", [(7, 48, 64, 12, "mpeg4"),
                                                       (5, 30, 46, Fraction(30000, 1001), "libx264")])
def test_round_trip_keeps_frames_rate_and_size(predictor, tmp_path, frames, h, w, rate, codec) -> None:
    src = tmp_path / f"in.{'avi' if codec == 'mpeg4' else 'mp4'}"
    make_video(src, frames, h, w, rate, codec)
    assert video_info(src) == (frames, Fraction(rate), (h, w))
    result = predict_video(predictor, src, tmp_path / "out" / "v.overlay.mp4", batch_size=3, progress=False)
    assert (result.frames, result.rate, result.size) == (frames, Fraction(rate), (h, w))
    assert video_info(result.path) == (frames, Fraction(rate), (h, w))


def test_overlay_frames_show_the_segmentation(predictor, tmp_path) -> None:
    """With alpha 1 a frame of the overlay is the palette image of the frame's mask."""
    src = tmp_path / "in.avi"
    make_video(src, 2, 64, 64, 5)
    dst = predict_video(predictor, src, tmp_path / "o.mp4", alpha=1.0, progress=False).path
    with av.open(str(src)) as c:
        first_in = next(c.decode(video=0)).to_ndarray(format="rgb24")
    with av.open(str(dst)) as c:
        first_out = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    expected = np.asarray(predictor.palette)[predictor.predict(first_in).mask]  # (VOC colours: no meta)
    assert np.abs(first_out - expected).mean() < 12  # lossy codec, but the classes' colours


def test_odd_frame_size_is_kept(predictor, tmp_path) -> None:
    src = tmp_path / "odd.mp4"
    with av.open(str(src), "w") as c:  # 4:4:4 allows odd sizes
        s = c.add_stream("libx264", rate=10)
        s.height, s.width, s.pix_fmt = 33, 47, "yuv444p"
        for i in range(3):
            for packet in s.encode(av.VideoFrame.from_ndarray(scene(33, 47, seed=i), format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    result = predict_video(predictor, src, tmp_path / "odd.overlay.mp4", progress=False)
    assert video_info(result.path) == (3, Fraction(10), (33, 47))


def test_cli_video_and_a_broken_video(tmp_path, capsys) -> None:
    model = tmp_path / "m.pt"
    save_model(colour_fcn(), model, palette=PALETTE)
    make_video(tmp_path / "clip.avi", 4, 32, 48, 8)
    (tmp_path / "broken.mp4").write_bytes(b"\0\0\0\x18ftypmp42 this is not a video")
    code = main(["predict", str(model), str(tmp_path / "clip.avi"), str(tmp_path / "broken.mp4"),
                 "--out", str(tmp_path / "out"), "--workers", "0"])
    captured = capsys.readouterr()
    assert code == 1
    assert f"{tmp_path / 'broken.mp4'}:" in captured.err and "1 input(s) skipped" in captured.err
    assert video_info(tmp_path / "out" / "clip.overlay.mp4") == (4, Fraction(8), (32, 48))
    assert not list((tmp_path / "out").glob(".*"))  # no temp files left behind
