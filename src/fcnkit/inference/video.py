"""Video in; overlay video, per-frame masks and per-frame JSON out; flicker measured.

Frames are decoded and encoded with PyAV (FFmpeg); batches of frames share one
forward pass. The overlay is H.264 in MP4 (MPEG-4 part 2 if this FFmpeg lacks
libx264). Per frame, a palette PNG of the mask (``NNNNNN_TTTTTTTTms.png``: frame index
and presentation time in milliseconds; with ``probs`` also ``.probs.npy``) goes into a
frames folder and a line of JSON (index, time, class shares, share of pixels changed
since the last frame, detections) into a ``.jsonl`` file. Frames stream through: memory
does not grow with the video's length. Everything is written under temp names and
renamed at the end, so an interrupted run leaves no half output under a final name.
An optional ``TemporalFilter`` smooths the class probabilities from frame to frame.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..extras import require
from ..io import check_output_file, discard_temp, publish_temp, temp_beside
from ..metrics.temporal import FlickerMeter
from ..progress import progress_bar
from .postprocess import save_mask
from .predictor import Prediction, Predictor
from .temporal import TemporalFilter


@dataclass(frozen=True)
class VideoResult:
    """What was written: frames, their rate and size, and the masks' flicker."""

    path: Path
    frames: int
    rate: Fraction
    size: tuple[int, int]  # (H, W)
    flicker: dict | None = None  # FlickerMeter.scores() of the written masks (segmentation models)
    frames_dir: Path | None = None
    frames_json: Path | None = None


def _codec() -> str:
    require("video", "av")
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def _frames(container, rate: Fraction) -> Iterator[tuple[np.ndarray, float]]:
    """(H, W, 3) uint8 RGB frames with their presentation time in seconds."""
    for i, frame in enumerate(container.decode(video=0)):
        t = frame.time if frame.time is not None else float(i / rate)
        yield frame.to_ndarray(format="rgb24"), float(t)


def frame_name(index: int, seconds: float) -> str:
    """``000012_00000800ms``: sorts in frame order, says when the frame is shown."""
    return f"{index:06d}_{max(0, round(seconds * 1000)):08d}ms"


class _FrameWriter:
    """Masks (and probabilities) into a folder, one JSON line per frame into a file; both
    under temp names until ``publish``."""

    def __init__(self, frames_dir: Path | None, frames_json: Path | None, probs: bool) -> None:
        self.frames_dir, self.frames_json, self.probs = frames_dir, frames_json, probs
        self.tmp_dir = None
        if frames_dir is not None:
            self.tmp_dir = frames_dir.with_name(frames_dir.name + ".partial")
            shutil.rmtree(self.tmp_dir, ignore_errors=True)  # an earlier interrupted run's
            self.tmp_dir.mkdir(parents=True)
        self.tmp_json = temp_beside(frames_json, suffix=".jsonl") if frames_json is not None else None
        self._json = open(self.tmp_json, "w", encoding="utf-8") if self.tmp_json is not None else None

    def write(self, index: int, seconds: float, result: Prediction, changed: float | None) -> None:
        name = frame_name(index, seconds)
        if self.tmp_dir is not None and result.mask is not None:
            save_mask(result.mask, result.palette, self.tmp_dir / f"{name}.png")
            if self.probs and result.probabilities is not None:
                np.save(self.tmp_dir / f"{name}.probs.npy", result.probabilities.astype(np.float16))
        if self._json is not None:
            line: dict = {"frame": index, "time": round(seconds, 6)}
            if result.mask is not None:
                line["shares"] = dict(zip(result.classes or map(str, range(len(result.palette))),
                                          result.class_shares()))
                line["changed"] = None if changed is None else round(changed, 6)
            if result.detections is not None:
                line["detections"] = result.detections
            self._json.write(json.dumps(line) + "\n")

    def publish(self) -> None:
        if self._json is not None:
            self._json.close()
            publish_temp(self.tmp_json, self.frames_json)
        if self.tmp_dir is not None:
            shutil.rmtree(self.frames_dir, ignore_errors=True)  # the caller allowed replacing it
            self.tmp_dir.rename(self.frames_dir)

    def discard(self) -> None:
        if self._json is not None:
            self._json.close()
            discard_temp(self.tmp_json)
        if self.tmp_dir is not None:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)


def predict_video(predictor: Predictor, src: str | Path, dst: str | Path, *, batch_size: int = 4,
                  alpha: float = 0.5, progress: bool | None = None, frames_dir: str | Path | None = None,
                  frames_json: str | Path | None = None, probs: bool = False,
                  smooth: TemporalFilter | None = None) -> VideoResult:
    """Segment every frame of ``src`` and write the overlays to ``dst`` (MP4); with
    ``frames_dir`` each frame's mask PNG (and ``probs``: float16 probabilities), with
    ``frames_json`` one JSON line per frame. ``smooth`` filters the class probabilities
    over time before the masks are taken. Outputs that cannot be written (a folder, a
    read-only folder) are refused before any frame is read. ``progress`` (default: the
    predictor's): a bar on a terminal, a line now and then elsewhere."""
    require("video", "av")
    import av

    src, dst = Path(src), check_output_file(dst, what="overlay video")
    frames_json = check_output_file(frames_json, what="per-frame JSON") if frames_json is not None else None
    frames_dir = Path(frames_dir) if frames_dir is not None else None
    if frames_dir is not None and frames_dir.exists() and not frames_dir.is_dir():
        raise ValueError(f"{frames_dir}: exists and is not a folder (frames folder)")
    try:
        inp = av.open(str(src))
    except (av.error.FFmpegError, OSError) as e:
        raise ValueError(f"{src}: cannot open as video ({e})") from None
    segments = bool(predictor.num_classes)
    want_probs = segments and (probs or smooth is not None)
    meter = FlickerMeter(predictor.num_classes) if segments else None
    if smooth is not None:
        smooth.reset()
    tmp = str(temp_beside(dst, suffix=".mp4"))
    writer = _FrameWriter(frames_dir, frames_json, probs)
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
                batch: list[tuple[np.ndarray, float]] = []
                previous: np.ndarray | None = None

                def flush() -> None:
                    nonlocal ostream, count, previous
                    results = predictor.predict_batch([rgb for rgb, _ in batch], probabilities=want_probs)
                    for (frame, seconds), result in zip(batch, results):
                        if smooth is not None and result.probabilities is not None:
                            p = smooth(result.probabilities, frame)
                            result = replace(result, mask=p.argmax(0).astype(result.mask.dtype),
                                             probabilities=p.astype(np.float16) if probs else None)
                        changed = None
                        if result.mask is not None:
                            meter.update(result.mask)
                            if previous is not None:
                                changed = float((previous != result.mask).mean())
                            previous = result.mask
                        writer.write(count, seconds, result, changed)
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
                    for frame, seconds in _frames(inp, rate):
                        size = frame.shape[:2]
                        batch.append((frame, seconds))
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
        writer.publish()
    except BaseException:
        discard_temp(tmp)
        writer.discard()
        raise
    return VideoResult(dst, count, Fraction(rate), tuple(size), meter.scores() if meter else None,
                       frames_dir, frames_json)


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
