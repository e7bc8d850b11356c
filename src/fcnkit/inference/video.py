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
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from ..extras import require
from ..heads import BOXES, SEG
from ..io import atomic_write_text, check_output_dir, check_output_file, discard_temp, publish_temp, temp_beside
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


def stream_rate(container) -> Fraction:
    """The first video stream's frame rate (25 when the file does not say)."""
    stream = container.streams.video[0]
    return Fraction(stream.average_rate or stream.guessed_rate or 25)


def decoded_frames(container, rate: Fraction | None = None) -> Iterator[tuple[np.ndarray, float]]:
    """(H, W, 3) uint8 RGB frames with their presentation time in seconds (from the frame
    count and ``rate``, default ``stream_rate``, where a frame carries no timestamp)."""
    rate = rate or stream_rate(container)
    for i, frame in enumerate(container.decode(video=0)):
        t = frame.time if frame.time is not None else i / rate
        yield frame.to_ndarray(format="rgb24"), float(t)


def frame_name(index: int, seconds: float) -> str:
    """``000012_00000800ms``: sorts in frame order, says when the frame is shown."""
    return f"{index:06d}_{max(0, round(seconds * 1000)):08d}ms"


RESUME_FILE = "resume.json"  # in a frames folder's .partial twin: what its masks were made from


class _FrameWriter:
    """Masks (and probabilities) into a folder, one JSON line per frame into a file; both
    under temp names until ``publish``. The masks' folder (``<frames>.partial``) outlives an
    interrupted run: a run with the same ``origin`` (model and video) takes its masks back
    (``saved``) instead of computing them again."""

    def __init__(self, frames_dir: Path | None, frames_json: Path | None, probs: bool, origin: dict | None) -> None:
        self.frames_dir, self.frames_json, self.probs = frames_dir, frames_json, probs
        self.tmp_dir = None
        self.saved: dict[int, Path] = {}
        if frames_dir is not None:
            self.tmp_dir = frames_dir.with_name(frames_dir.name + ".partial")
            marker = self.tmp_dir / RESUME_FILE
            try:
                same = origin is not None and json.loads(marker.read_text()) == origin
            except (OSError, ValueError):
                same = False
            if same:
                self.saved = {int(p.name[:6]): p for p in self.tmp_dir.glob("[0-9]" * 6 + "_*ms.png")}
            else:
                shutil.rmtree(self.tmp_dir, ignore_errors=True)  # another run's, or none
                self.tmp_dir.mkdir(parents=True)
                if origin is not None:
                    atomic_write_text(marker, json.dumps(origin))
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
            (self.tmp_dir / RESUME_FILE).unlink(missing_ok=True)
            shutil.rmtree(self.frames_dir, ignore_errors=True)  # the caller allowed replacing it
            self.tmp_dir.rename(self.frames_dir)

    def discard(self, *, keep_masks: bool = False) -> None:
        """Remove the temps; ``keep_masks`` leaves the masks' folder for a later run to resume."""
        if self._json is not None:
            self._json.close()
            discard_temp(self.tmp_json)
        if self.tmp_dir is not None and not keep_masks:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)


class VideoSink:
    """Where segmented frames go, one batch at a time: the temporal filter, the flicker
    meter, each frame's mask PNG and JSON line, and the overlay video. ``rate`` fixes the
    overlay's frame rate (a file's frames, all kept); ``None`` times each overlay frame by
    its source timestamp (a live stream whose frames are dropped when the model is slower).
    ``finish()`` publishes every output under its final name, ``discard()`` removes them."""

    def __init__(self, predictor: Predictor, dst: Path, *, alpha: float, frames_dir: Path | None,
                 frames_json: Path | None, probs: bool, smooth: TemporalFilter | None,
                 rate: Fraction | None, source: str = "") -> None:
        require("video", "av")
        import av

        self._av = av
        self.predictor, self.dst, self.alpha, self.probs, self.smooth, self.rate = \
            predictor, dst, alpha, probs, smooth, rate
        segments = SEG in predictor.spec.heads
        self.want_probs = segments and (probs or smooth is not None)
        self.meter = FlickerMeter(predictor.spec.num_classes) if segments else None
        if smooth is not None:
            smooth.reset()
        self.tmp = str(temp_beside(dst, suffix=".mp4"))
        origin = {"model": str(predictor.backend.source), "source": source, "smooth": repr(smooth), "probs": probs}
        # only a file's segmentation masks come back (a detector's boxes are not in them; a live
        # stream never shows the same frames twice)
        self.writer = _FrameWriter(frames_dir, frames_json, probs,
                                   origin if source and BOXES not in predictor.spec.heads else None)
        self.resumed = 0  # frames whose masks an interrupted run had made
        self.out = av.open(self.tmp, "w", format="mp4")
        self.stream = None
        self.count, self.size = 0, (0, 0)
        self._previous: np.ndarray | None = None
        self._last_pts = -1

    def add(self, batch: list[tuple[np.ndarray, float]]) -> None:
        """Segment ``batch`` ((H, W, 3) uint8 RGB frames with their times in seconds) and write it."""
        if not batch:
            return
        saved = [self.writer.saved.get(self.count + k) for k in range(len(batch))]
        fresh = iter(self.predictor.predict_batch([rgb for (rgb, _), s in zip(batch, saved) if s is None],
                                                  probabilities=self.want_probs))
        for (frame, seconds), path in zip(batch, saved):
            if path is not None:  # made by an interrupted run: read back, not computed again
                result = self._restored(frame, path)
                if self.smooth is not None:
                    self.smooth.reset()  # the filter starts again after the restored frames
            else:
                result = next(fresh)
            if self.smooth is not None:
                result = self.smooth.apply(result, keep_probabilities=self.probs)
            changed = None
            if result.mask is not None:
                self.meter.update(result.mask)
                if self._previous is not None:
                    changed = float((self._previous != result.mask).mean())
                self._previous = result.mask
            self.writer.write(self.count, seconds, result, changed)
            rgb = np.asarray(result.overlay(self.alpha))  # (H, W, 3)
            if self.stream is None:
                self._open_stream(rgb.shape[:2])
            vf = self._av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if self.rate is None:  # live: each frame shown at its source time (ms), never two at one time
                vf.pts = self._last_pts = max(self._last_pts + 1, round(seconds * 1000))
                vf.time_base = Fraction(1, 1000)
            for packet in self.stream.encode(vf):
                self.out.mux(packet)
            self.count += 1
            self.size = frame.shape[:2]

    def _restored(self, frame: np.ndarray, path: Path) -> Prediction:
        mask = np.asarray(Image.open(path))
        if mask.shape != frame.shape[:2]:
            raise ValueError(f"{path}: a mask of {mask.shape[1]}x{mask.shape[0]} for a frame of "
                             f"{frame.shape[1]}x{frame.shape[0]}; delete {path.parent} to start afresh")
        self.resumed += 1
        return self.predictor.prediction(frame, mask.astype(self.predictor.mask_dtype))

    def _open_stream(self, size: tuple[int, int]) -> None:
        self.stream = self.out.add_stream(_codec(), rate=self.rate or 30)
        if self.rate is None:
            self.stream.time_base = Fraction(1, 1000)
            self.stream.codec_context.time_base = Fraction(1, 1000)
        self.stream.height, self.stream.width = size
        # 4:2:0 chroma needs even sizes; 4:4:4 keeps odd ones exact
        self.stream.pix_fmt = "yuv420p" if size[0] % 2 == 0 and size[1] % 2 == 0 else "yuv444p"

    def finish(self) -> VideoResult:
        if self.stream is None:
            raise ValueError("no frames")
        for packet in self.stream.encode():  # drain the encoder
            self.out.mux(packet)
        self.out.close()
        publish_temp(self.tmp, self.dst)
        self.writer.publish()
        return VideoResult(self.dst, self.count, Fraction(self.rate or 0), tuple(self.size),
                           self.meter.scores() if self.meter else None, self.writer.frames_dir,
                           self.writer.frames_json)

    def discard(self, *, keep_masks: bool = False) -> None:
        try:
            self.out.close()
        except Exception:  # noqa: BLE001 - a half-written container; it is deleted next
            pass
        discard_temp(self.tmp)
        self.writer.discard(keep_masks=keep_masks)


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

    src = Path(src)
    dst, frames_dir, frames_json = check_video_outputs(dst, frames_dir, frames_json)
    try:
        inp = av.open(str(src))
    except (av.error.FFmpegError, OSError) as e:
        raise ValueError(f"{src}: cannot open as video ({e})") from None
    sink = None
    try:
        with inp:
            if not inp.streams.video:
                raise ValueError(f"{src}: no video stream")
            stream = inp.streams.video[0]
            rate = stream_rate(inp)
            sink = VideoSink(predictor, dst, alpha=alpha, frames_dir=frames_dir, frames_json=frames_json,
                             probs=probs, smooth=smooth, rate=rate, source=str(src.resolve()))
            with progress_bar(total=stream.frames or None, unit="frame", desc=src.name,
                              enabled=predictor.progress if progress is None else progress) as bar:
                batch: list[tuple[np.ndarray, float]] = []
                try:
                    for frame, seconds in decoded_frames(inp, rate):
                        batch.append((frame, seconds))
                        if len(batch) >= batch_size:
                            sink.add(batch)
                            bar.update(len(batch))
                            batch = []
                    sink.add(batch)
                    bar.update(len(batch))
                except av.error.FFmpegError as e:
                    raise ValueError(f"{src}: cannot decode frame {sink.count + len(batch)} ({e})") from None
            if sink.count == 0:
                raise ValueError(f"{src}: video has no frames")
            return sink.finish()
    except BaseException as e:
        if sink is not None:  # interrupted (Ctrl-C, SIGTERM): the masks so far stay for a rerun to resume
            sink.discard(keep_masks=isinstance(e, (KeyboardInterrupt, SystemExit)))
        raise


def check_video_outputs(dst: str | Path, frames_dir: str | Path | None,
                        frames_json: str | Path | None) -> tuple[Path, Path | None, Path | None]:
    """The overlay video, frames folder and per-frame JSON, each refused (ValueError) before
    any frame is read if it cannot be written."""
    return (check_output_file(dst, what="overlay video"),
            check_output_dir(frames_dir, what="frames folder") if frames_dir is not None else None,
            check_output_file(frames_json, what="per-frame JSON") if frames_json is not None else None)


def video_info(path: str | Path) -> tuple[int, Fraction, tuple[int, int]]:
    """(decoded frame count, average rate, (H, W)) of a video, by decoding it."""
    require("video", "av")
    import av

    with av.open(str(path)) as c:
        n, size = 0, (0, 0)
        for frame in c.decode(video=0):
            n += 1
            size = (frame.height, frame.width)
        return n, stream_rate(c), size
