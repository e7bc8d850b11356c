"""Live sources: a camera or a network stream, segmented as it comes, never falling behind.

A reader thread decodes the source (PyAV/FFmpeg) into a one-frame slot; the model takes
the newest frame whenever it is free, so when inference is slower than the source the
frames in between are dropped (and counted), not queued: the output follows the live
picture with one frame of delay at most. Results go to the same outputs as a video file
(``VideoSink``: overlay video timed by the source's timestamps, per-frame masks and JSON
lines). The run ends at ``max_frames`` / ``duration``, at the end of the stream, when the
source stalls for ``stall`` seconds or sends what cannot be decoded (a clear message),
or on Ctrl-C; whatever was written until then is kept.
"""

from __future__ import annotations

import errno
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..extras import require
from .predictor import Predictor
from .temporal import TemporalFilter
from .video import VideoResult, VideoSink, check_video_outputs, decoded_frames

URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
DEFAULT_STALL = 10.0  # seconds without a frame that end a live run


def is_live_source(spec: str) -> bool:
    """``rtsp://...``, ``http(s)://...``, ``udp://...`` (any FFmpeg network URL), ``/dev/videoN``
    or a bare camera index (``0``)."""
    text = str(spec)
    if "://" in text:
        return text.split("://", 1)[0].lower() in URL_SCHEMES
    return bool(re.fullmatch(r"\d{1,3}|/dev/video\d+", text)) and not (text.isdigit() and Path(text).exists())


def source_name(spec: str) -> str:
    """A file-name stem for a live source's outputs: ``camera0``, ``127.0.0.1_8554_live``."""
    text = str(spec)
    if text.isdigit() or text.startswith("/dev/video"):
        return "camera" + re.sub(r"\D", "", text)
    rest = text.split("://", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", rest).strip("_.")[:80] or "stream"


def _open(spec: str, stall: float):
    require("video", "av")
    import av

    text = str(spec)
    timeout_us = str(int(stall * 1_000_000))
    if text.isdigit() or text.startswith("/dev/video"):
        device = f"/dev/video{text}" if text.isdigit() else text
        return av.open(device, format="v4l2", timeout=stall)
    options = {"rw_timeout": timeout_us}  # FFmpeg gives up on a silent socket after this long
    if text.lower().startswith("rtsp"):
        options["rtsp_transport"] = "tcp"
    return av.open(text, options=options, timeout=stall)


class LatestFrame:
    """Decodes ``container`` in a thread into a one-frame slot (newer frames replace older
    ones not yet taken): ``take(timeout)`` waits for the next new frame."""

    def __init__(self, container) -> None:
        self.container = container
        self.decoded = self.dropped = 0
        self.ended = self.stalled = False
        self.error: str | None = None
        self._slot: tuple[np.ndarray, float] | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fcnkit-stream", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        require("video", "av")
        import av

        try:
            for rgb, t in decoded_frames(self.container):
                if self._stop.is_set():
                    break
                with self._cond:
                    if self._slot is not None:
                        self.dropped += 1
                    self._slot = (rgb, t)
                    self.decoded += 1
                    self._cond.notify()
        except av.error.ExitError:  # PyAV's read timeout: nothing arrived for ``stall`` seconds
            self.stalled = True
        except (av.error.FFmpegError, OSError, ValueError) as e:
            if isinstance(e, OSError) and e.errno == errno.EIO and self.decoded:
                pass  # a server that closes the connection (no length announced) has ended its stream
            else:
                self.error = f"{type(e).__name__}: {e}"
        finally:
            with self._cond:
                self.ended = True
                self._cond.notify()

    def take(self, timeout: float) -> tuple[np.ndarray, float] | None:
        """The newest frame, waiting up to ``timeout`` s; None if the source ended or stalled."""
        with self._cond:
            self._cond.wait_for(lambda: self._slot is not None or self.ended, timeout=timeout)
            got, self._slot = self._slot, None
            return got

    def stop(self, timeout: float) -> bool:
        """Ask the thread to end; True once it has (within ``timeout`` s)."""
        self._stop.set()
        self._thread.join(timeout=timeout)
        return not self._thread.is_alive()


@dataclass(frozen=True)
class StreamResult:
    """A live run: what was written, and how it ended."""

    video: VideoResult | None  # None when not one frame arrived
    decoded: int  # frames the source delivered
    dropped: int  # of those, skipped because the model was busy
    seconds: float
    ended: str  # "max-frames", "duration", "end of stream", "stalled ...", "interrupted", or the error

    @property
    def fps(self) -> float:
        return (self.video.frames if self.video else 0) / self.seconds if self.seconds > 0 else 0.0


def predict_stream(predictor: Predictor, source: str, dst: str | Path, *, alpha: float = 0.5,
                   frames_dir: str | Path | None = None, frames_json: str | Path | None = None, probs: bool = False,
                   smooth: TemporalFilter | None = None, max_frames: int | None = None,
                   duration: float | None = None, stall: float = DEFAULT_STALL) -> StreamResult:
    """Segment the live ``source`` (see ``is_live_source``) until ``max_frames`` frames are
    done, ``duration`` seconds have passed, the stream ends or stalls; see the module doc."""
    require("video", "av")
    import av

    dst, frames_dir, frames_json = check_video_outputs(dst, frames_dir, frames_json)
    try:
        container = _open(source, stall)
    except (av.error.FFmpegError, OSError) as e:
        raise ValueError(f"{source}: cannot open the stream ({type(e).__name__}: {e})") from None
    if not container.streams.video:
        container.close()
        raise ValueError(f"{source}: no video stream")
    reader = LatestFrame(container)
    sink = VideoSink(predictor, dst, alpha=alpha, frames_dir=frames_dir, frames_json=frames_json, probs=probs,
                     smooth=smooth, rate=None)
    start, ended = time.monotonic(), "end of stream"
    try:
        while True:
            if max_frames is not None and sink.count >= max_frames:
                ended = "max-frames"
                break
            left = None if duration is None else duration - (time.monotonic() - start)
            if left is not None and left <= 0:
                ended = "duration"
                break
            got = reader.take(timeout=min(stall, left) if left is not None else stall)
            if got is None:
                if reader.error:
                    ended = f"cannot decode the stream ({reader.error})"
                elif reader.stalled:
                    ended = f"stalled: no frame for {stall:g} s"
                elif reader.ended:
                    ended = "end of stream"
                elif duration is not None and time.monotonic() - start >= duration:
                    ended = "duration"
                else:
                    ended = f"stalled: no frame for {stall:g} s"
                break
            sink.add([got])
    except KeyboardInterrupt:
        ended = "interrupted"
    finally:
        if reader.stop(timeout=stall + 1):  # a reader still blocked in FFmpeg keeps the container
            container.close()
    seconds = time.monotonic() - start
    if sink.count == 0:
        sink.discard()
        return StreamResult(None, reader.decoded, reader.dropped, seconds, ended)
    return StreamResult(sink.finish(), reader.decoded, reader.dropped, seconds, ended)


__all__ = ["DEFAULT_STALL", "LatestFrame", "StreamResult", "is_live_source", "predict_stream", "source_name"]
