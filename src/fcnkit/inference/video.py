"""Video in, overlay video out: every frame segmented, frame count and rate preserved.

Frames are decoded and encoded with PyAV (FFmpeg); batches of frames share one
forward pass. The output is H.264 in MP4 (MPEG-4 part 2 if this FFmpeg lacks
libx264), written to a temp file and renamed, so a crash leaves no half video.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..extras import require
from ..io import check_output_file, discard_temp, publish_temp, temp_beside
from ..progress import progress_bar
from .predictor import Predictor


@dataclass(frozen=True)
class VideoResult:
    """What was written: frames, their rate and size."""

    path: Path
    frames: int
    rate: Fraction
    size: tuple[int, int]  # (H, W)


def _codec() -> str:
    require("video", "av")
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def _frames(container) -> Iterator[np.ndarray]:
    for frame in container.decode(video=0):
        yield frame.to_ndarray(format="rgb24")  # (H, W, 3) uint8


def predict_video(predictor: Predictor, src: str | Path, dst: str | Path, *, batch_size: int = 4,
                  alpha: float = 0.5, progress: bool | None = None) -> VideoResult:
    """Segment every frame of ``src`` and write the overlays to ``dst`` (MP4); a ``dst`` that
    cannot be written (a folder, a read-only folder) is refused before any frame is read.
    ``progress`` (default: the predictor's): a bar on a terminal, a line now and then elsewhere."""
    require("video", "av")
    import av

    src, dst = Path(src), check_output_file(dst, what="overlay video")
    try:
        inp = av.open(str(src))
    except (av.error.FFmpegError, OSError) as e:
        raise ValueError(f"{src}: cannot open as video ({e})") from None
    tmp = str(temp_beside(dst, suffix=".mp4"))
    count, size = 0, (0, 0)
    try:
        with inp:
            if not inp.streams.video:
                raise ValueError(f"{src}: no video stream")
            stream = inp.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or Fraction(25)
            with av.open(tmp, "w", format="mp4") as out, \
                    progress_bar(total=stream.frames or None, unit="frame", desc=src.name,
                                 enabled=predictor.progress if progress is None else progress) as bar:
                ostream = None
                batch: list[np.ndarray] = []

                def flush() -> None:
                    nonlocal ostream, count
                    for result in predictor.predict_batch(batch):
                        rgb = np.asarray(result.overlay(alpha))  # (H, W, 3)
                        if ostream is None:
                            ostream = out.add_stream(_codec(), rate=rate)
                            ostream.height, ostream.width = rgb.shape[:2]
                            # 4:2:0 chroma needs even sizes; 4:4:4 keeps odd ones exact
                            even = rgb.shape[0] % 2 == 0 and rgb.shape[1] % 2 == 0
                            ostream.pix_fmt = "yuv420p" if even else "yuv444p"
                        for packet in ostream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                            out.mux(packet)
                        count += 1
                        bar.update(1)
                    batch.clear()

                try:
                    for rgb in _frames(inp):
                        size = rgb.shape[:2]
                        batch.append(rgb)
                        if len(batch) >= batch_size:
                            flush()
                    flush()
                except av.error.FFmpegError as e:
                    raise ValueError(f"{src}: cannot decode frame {count + len(batch)} ({e})") from None
                if ostream is None:
                    raise ValueError(f"{src}: video has no frames")
                for packet in ostream.encode():  # drain the encoder
                    out.mux(packet)
        publish_temp(tmp, dst)
    except BaseException:
        discard_temp(tmp)
        raise
    return VideoResult(dst, count, Fraction(rate), tuple(size))


def video_info(path: str | Path) -> tuple[int, Fraction, tuple[int, int]]:
    """(decoded frame count, average rate, (H, W)) of a video, by decoding it."""
    require("video", "av")
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        n, size = 0, (0, 0)
        for frame in c.decode(video=0):
            n += 1
            size = (frame.height, frame.width)
        return n, Fraction(stream.average_rate), size
