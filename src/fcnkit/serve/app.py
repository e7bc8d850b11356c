"""``fcnkit serve``: an HTTP service and a web page for segmentation and detection models.

A FastAPI app on uvicorn. The model is opened once (``open_model`` through
``Predictor``: a weights name, ``.pt``/``.safetensors``, ``.onnx`` or OpenVINO
``.xml``) in a background thread at start-up, so ``/healthz`` answers 503 until it is
ready. Requests are decoded off the event loop, micro-batched with requests of the
same size (``serve.batching``), and answered as JSON (mask as a base64 palette PNG,
per-class pixel shares, detections, timings), as the palette PNG itself
(``?format=png``) or as an overlay JPEG (``?format=overlay``). Bad input gets a JSON
error and never takes the server down. The app keeps no state between requests, so
it scales out by running more processes or machines, one model each, behind any
load balancer.

Read top to bottom: settings, metrics and middleware; the model state (``ServedModel``,
what every route shares); a request's image in and its answer out; batching (a request's
way through the queue, a stream's frames); the API routes; the page; ``create_app``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import html
import io
import json
import math
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..extras import require

# the serve extra, checked before its imports: one line naming it instead of an ImportError
require("serve", "fastapi", "multipart", "prometheus_client")

from fastapi import APIRouter, FastAPI, Request, WebSocket, WebSocketDisconnect  # noqa: E402
from fastapi.responses import HTMLResponse, JSONResponse, Response  # noqa: E402
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,  # noqa: E402
                               generate_latest)
from starlette.concurrency import run_in_threadpool  # noqa: E402
from starlette.requests import ClientDisconnect  # noqa: E402

from ..data.image_io import ImageReadError, NotAnImage, TooManyPixels
from ..heads import BOXES
from ..inference.images import decode_image_bytes
from ..inference.postprocess import fit_jpeg
from ..inference.predictor import Prediction, Predictor
from ..inference.temporal import TemporalFilter
from .batching import Closed, MicroBatcher, QueueFull, Timing

DEFAULT_MAX_BODY = 20 * 2**20
# an upload may decode to at most this many pixels: a 16 MP photo (4000 x 4000) takes a few seconds
# on 2 cores; a 64 MP one (a 60 KB all-zero PNG can declare it) took 81 s and 1.7 GB
DEFAULT_MAX_PIXELS = 16_000_000
DEFAULT_TIMEOUT = 60.0  # seconds a request may wait and compute before it is answered 504 and dropped
DISCONNECT_POLL = 0.25  # seconds between checks whether a waiting client is still there
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class ServeSettings:
    max_batch: int = 4
    max_wait_ms: float = 5.0
    max_queue: int = 64
    max_body: int = DEFAULT_MAX_BODY
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_memory: str | int | None = None  # the predictor's tiling budget for large images
    device: str | None = None
    alpha: float = 0.5
    conf: float | None = None  # detectors: boxes scoring at least this (None: the model's recommended threshold)
    timeout: float = DEFAULT_TIMEOUT
    max_streams: int = 4  # WebSocket streams (/v1/stream) open at once

    def __post_init__(self) -> None:
        """Every limit checked when the settings are made (a NaN wait once hung every request)."""
        for name, low in (("max_batch", 1), ("max_queue", 1), ("max_body", 1), ("max_pixels", 1), ("max_streams", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"{name.replace('_', '-')} must be a whole number >= {low}, not {v!r}")
        for name, low, high in (("max_wait_ms", 0.0, 60_000.0), ("timeout", 0.001, 86_400.0), ("alpha", 0.0, 1.0)):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not (low <= v <= high):  # NaN fails every comparison
                raise ValueError(f"{name.replace('_', '-')} must be a number in [{low:g}, {high:g}], not {v!r}")
        if self.conf is not None and not 0 <= self.conf <= 1:
            raise ValueError(f"conf must be a score in [0, 1], not {self.conf!r}")


def open_predictor(model: Any, settings: ServeSettings) -> Predictor:
    """The model as the server runs it, with one forward pass done: a model that cannot load or
    run fails here (``fcnkit serve`` exits 2 before the server starts; the app answers 503)."""
    predictor = Predictor(model, device=settings.device, max_memory=settings.max_memory, conf=settings.conf,
                          progress=False)
    predictor.warm_up()
    return predictor


class _Metrics:
    """Prometheus series of one app (its own registry, so several apps never collide)."""

    def __init__(self, max_batch: int, depth) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("fcnkit_requests", "HTTP requests by path and status", ["path", "status"],
                                registry=self.registry)
        self.errors = Counter("fcnkit_errors", "requests answered with a 4xx/5xx status", ["status"],
                              registry=self.registry)
        self.latency = Histogram("fcnkit_request_seconds", "request latency, arrival to response",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch = Histogram("fcnkit_batch_size", "images per forward pass",
                               buckets=tuple(range(1, max_batch + 1)), registry=self.registry)
        self.inference = Histogram("fcnkit_batch_seconds", "seconds per batch (forward + postprocessing)",
                                   buckets=LATENCY_BUCKETS, registry=self.registry)
        gauge = Gauge("fcnkit_queue_depth", "requests waiting for a batch", registry=self.registry)
        gauge.set_function(depth)

    def on_batch(self, size: int, seconds: float) -> None:
        self.batch.observe(size)
        self.inference.observe(seconds)


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


class BodyTooLarge(Exception):
    pass


class CountRequests:
    """ASGI middleware: requests by path and status, errors, and /v1/predict latency.

    Plain ASGI rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware wraps
    exceptions raised while the body streams (an over-long chunked upload) in an
    ExceptionGroup the 413 handler never sees, and hides client disconnects."""

    PATHS = ("/", "/healthz", "/metrics", "/v1/predict")

    def __init__(self, app, metrics: "_Metrics") -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), None

        async def tracking_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            path = scope.get("path", "") if scope.get("path", "") in self.PATHS else "other"
            code = str(status or 500)
            self.metrics.requests.labels(path, code).inc()
            if int(code) >= 400:
                self.metrics.errors.labels(code).inc()
            if path == "/v1/predict":
                self.metrics.latency.observe(time.perf_counter() - start)


class LimitBody:
    """ASGI middleware: refuse a request body over ``max_body`` bytes with 413, from its
    Content-Length before reading, or while streaming when the length is not declared."""

    def __init__(self, app, max_body: int) -> None:
        self.app, self.max_body = app, max_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            return await self._refuse(scope, receive, send)
        seen, started = 0, False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope, receive, send) -> None:
        response = _error(413, f"request body is larger than --max-body ({self.max_body} bytes)",
                          Connection="close")
        await response(scope, receive, send)


# --- the model state: opened once, in the background -----------------------------------------

CONF_FLOOR = 0.05  # the lowest box score a request can ask for (the page's threshold slider starts here)


class ServedModel:
    """What every route shares (``app.state.serve``): the settings, the metrics, and the model,
    opened in a background thread at start-up (``/healthz`` answers 503 until then) with the
    micro-batcher that feeds it. ``model`` is a ready ``Predictor`` (what ``fcnkit serve``
    passes, having loaded it first so a bad model fails at once) or anything ``Predictor`` takes."""

    def __init__(self, model: Any, settings: ServeSettings, name: str | None) -> None:
        self.model, self.settings = model, settings
        source = model.backend.source if isinstance(model, Predictor) else model
        self.name = Path(str(name or source)).name  # never a server path
        self.predictor: Predictor | None = None
        self.batcher: MicroBatcher | None = None  # set last: once it is there, everything is
        self.error: str | None = None  # what answers say when loading failed (the log has the details)
        self.metrics = _Metrics(settings.max_batch, lambda: self.batcher.depth if self.batcher else 0)
        self.streams = 0  # /v1/stream connections open

    def load(self) -> None:
        """Open the model (from a path: with one forward pass, so "ok" means it runs) and start
        its batcher; a failure is logged and kept as ``error``."""
        try:
            predictor = self.model if isinstance(self.model, Predictor) else open_predictor(self.model, self.settings)
            self.predictor = predictor
            self.batcher = MicroBatcher(predictor.predict_batch, max_batch=self.settings.max_batch,
                                        max_wait_ms=self.settings.max_wait_ms, max_queue=self.settings.max_queue,
                                        on_batch=self.metrics.on_batch)
        except Exception as e:  # noqa: BLE001 - the log has it; HTTP answers say only that loading failed
            self.error = "the model failed to load"
            print(f"fcnkit serve: cannot load {self.model}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        """Load at start-up (a ready Predictor at once, anything else in the background); at
        shutdown, once uvicorn has finished the requests in flight, answer those still queued."""
        if isinstance(self.model, Predictor):
            self.load()  # nothing slow to wait for
        else:
            threading.Thread(target=self.load, name="fcnkit-load", daemon=True).start()
        yield
        if self.batcher is not None:
            await run_in_threadpool(self.batcher.close)

    @property
    def unavailable(self) -> str | None:
        """Why requests cannot be answered yet (still loading, or failed); None once ready."""
        if self.batcher is not None:
            return None
        return self.error or "the model is still loading"

    def health(self) -> JSONResponse:
        """The ``/healthz`` answer: 200 with the model's facts once ready, else 503 saying why."""
        if self.batcher is not None:
            p = self.predictor
            return JSONResponse({"status": "ok", "model": self.name, "task": p.spec.task, "backend": p.backend.backend,
                                 "classes": p.classes, "box_classes": p.box_classes,
                                 "conf": p.conf if BOXES in p.spec.heads else None})
        if self.error is not None:
            return JSONResponse({"status": "failed", "error": self.error}, status_code=503)
        return JSONResponse({"status": "loading"}, status_code=503)

    def options(self, conf: str | None, filt: TemporalFilter | None) -> tuple[dict[str, Any], float | None]:
        """(what a request asks of ``predict_batch``, its box threshold). The options are the same
        for every request of a kind, so the batcher runs them together: probabilities for a
        temporal filter, and a detector's boxes decoded down to CONF_FLOOR. The threshold
        (``conf`` as given in the query, 0 meaning CONF_FLOOR; else the server's) is applied to
        the request's own answer (``keep_boxes``). ValueError for a bad ``conf``."""
        if filt is not None:
            self.predictor.backend.require_scores("steady masks (the temporal filter) need", name="this model")
        options: dict[str, Any] = {"probabilities": True} if filt is not None else {}
        least = None
        if conf is not None:
            try:
                least = float(conf)
            except ValueError:
                least = math.nan
            if not CONF_FLOOR <= least <= 1 and not least == 0:
                raise ValueError(f"conf must be a score in [{CONF_FLOOR}, 1] (0: every box down to {CONF_FLOOR}), "
                                 f"not {conf!r}")
        if BOXES not in self.predictor.spec.heads:
            return options, None
        options["conf"] = CONF_FLOOR
        return options, self.predictor.conf if least is None else max(least, CONF_FLOOR)


# --- a request's image in, its answer out ----------------------------------------------------

def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(image) -> bytes:
    buf = io.BytesIO()
    fit_jpeg(image).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def keep_boxes(pred: Prediction, least: float | None) -> Prediction:
    """``pred`` with only the boxes scoring above ``least`` (None: all): one request's threshold
    applied to boxes decoded for a whole batch down to CONF_FLOOR (the same boxes a decode at
    ``least`` gives: the decoder thresholds after its top-k, and NMS keeps higher scores first)."""
    if least is None or not pred.detections:
        return pred
    return dataclasses.replace(pred, detections=[d for d in pred.detections if d["score"] > least])


def describe(pred: Prediction, timing: Timing, *, total_ms: float, decode_ms: float) -> dict[str, Any]:
    """The JSON answer for one prediction."""
    h, w = pred.image.shape[:2]
    out: dict[str, Any] = {"width": w, "height": h, "classes": pred.classes,
                           "palette": [list(map(int, c)) for c in pred.palette]}
    if pred.mask is not None:
        out["fractions"] = pred.class_shares()
        out["mask_png"] = base64.b64encode(_png(pred.colorized())).decode("ascii")
    if pred.detections is not None:
        names = pred.box_classes or []
        out["detections"] = [{**d, "name": names[d["label"]] if d["label"] < len(names) else str(d["label"])}
                             for d in pred.detections]
        out["box_classes"] = names
    out["timings_ms"] = {"decode": round(decode_ms, 2), "queue": round(timing.queue_ms, 2),
                         "inference": round(timing.inference_ms, 2), "total": round(total_ms, 2),
                         "batch_size": timing.batch_size}
    return out


async def _read_image(request: Request, settings: ServeSettings) -> tuple[np.ndarray, float] | Response:
    """The uploaded image decoded (multipart field ``image`` or the raw body), and the decode
    time in ms; or the error response that says what is wrong with the upload."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if ctype == "multipart/form-data":
            try:
                form = await request.form(max_files=1, max_fields=8)
            except (BodyTooLarge, ClientDisconnect):
                raise
            except Exception as e:  # noqa: BLE001 - a malformed multipart body
                return _error(400, f"malformed multipart body ({type(e).__name__})")
            upload = form.get("image")
            if upload is None or isinstance(upload, str):
                return _error(400, "multipart upload without a file field named 'image'")
            data, source = await upload.read(), Path(upload.filename or "upload").name
        elif ctype.startswith("image/") or ctype == "application/octet-stream":
            data, source = await request.body(), "body"
        else:
            return _error(415, f"unsupported content type {ctype or 'none'!r}: send multipart/form-data with "
                               f"a file field 'image', or the image itself with an image/* content type")
    except BodyTooLarge:
        return _error(413, f"request body is larger than --max-body ({settings.max_body} bytes)", Connection="close")
    if not data:
        return _error(400, f"{source}: empty upload")
    t0 = time.perf_counter()
    try:
        image = await run_in_threadpool(decode_image_bytes, data, max_pixels=settings.max_pixels, source=source)
    except NotAnImage as e:
        return _error(415, str(e))
    except TooManyPixels as e:
        return _error(413, f"{e}; this server takes at most --max-pixels {settings.max_pixels}")
    except ImageReadError as e:
        return _error(400, str(e))
    return image, 1000 * (time.perf_counter() - t0)


# --- batching: a request's way through the queue ----------------------------------------------

async def _queued(request: Request, served: ServedModel, options: dict[str, Any],
                  deadline: float) -> tuple[Prediction, Timing, float] | Response:
    """(prediction, timing, decode ms) of the request's image, or the response that says why not.

    A place in the queue first: a request beyond it never reads or decodes its upload. While
    it waits, a client that hangs up or a ``deadline`` that passes drops its queued work."""
    batcher = served.batcher
    try:
        ticket = batcher.reserve()
    except QueueFull as e:
        return _error(503, f"server busy: {e}", **{"Retry-After": "1"})
    except Closed as e:
        return _error(503, str(e), **{"Retry-After": "5"})
    try:
        got = await _read_image(request, served.settings)
    except ClientDisconnect:
        ticket.release()
        return Response(status_code=499)  # nobody to answer; one log line, no traceback
    except BaseException:
        ticket.release()
        raise
    if isinstance(got, Response):
        ticket.release()
        return got
    image, decode_ms = got
    waiting = asyncio.ensure_future(batcher.submit(image, ticket, **options))
    while not waiting.done():
        await asyncio.wait({waiting}, timeout=min(DISCONNECT_POLL, max(0.0, deadline - time.perf_counter())))
        if waiting.done():
            break
        gone = await request.is_disconnected()
        if gone or time.perf_counter() >= deadline:
            waiting.cancel()  # its queued work is dropped
            if gone:
                return Response(status_code=499)
            return _error(504, f"not answered within --timeout {served.settings.timeout:g} s; try a smaller image "
                               f"or later")
    try:
        pred, timing = waiting.result()
    except QueueFull as e:
        return _error(503, f"server busy: {e}", **{"Retry-After": "1"})
    except Closed as e:
        return _error(503, str(e), **{"Retry-After": "5"})
    except Exception as e:  # noqa: BLE001 - an inference failure answers this request only; the log has it
        print(f"fcnkit serve: inference failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return _error(500, "inference failed")
    return pred, timing, decode_ms


async def _serve_stream(ws: WebSocket, served: ServedModel, filt: TemporalFilter | None,
                        options: dict[str, Any], least: float | None) -> None:
    """One stream: a receiver keeps only the newest frame; this loop answers frames one by one."""
    slot: dict[str, Any] = {"data": None, "index": -1, "dropped": 0, "closed": False}
    ready = asyncio.Event()

    async def receive() -> None:
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                data = message.get("bytes")
                if data is None:
                    continue  # text messages carry nothing yet
                if slot["data"] is not None:
                    slot["dropped"] += 1  # the model was busy: the older frame is never looked at
                slot["data"], slot["index"] = data, slot["index"] + 1
                ready.set()
        finally:
            slot["closed"] = True
            ready.set()

    receiver = asyncio.ensure_future(receive())
    try:
        while True:
            await ready.wait()
            ready.clear()
            data, index = slot["data"], slot["index"]
            slot["data"] = None
            if data is None:
                if slot["closed"]:
                    break
                continue
            start = time.perf_counter()
            try:
                image = await run_in_threadpool(decode_image_bytes, data, max_pixels=served.settings.max_pixels,
                                                source=f"frame {index}")
                pred, timing = await served.batcher.submit(image, **options)
                pred = keep_boxes(pred, least)
            except (ImageReadError, QueueFull, Closed) as e:
                await ws.send_json({"frame": index, "error": str(e), "dropped": slot["dropped"]})
                continue
            decode_ms = 1000 * (time.perf_counter() - start) - timing.queue_ms - timing.inference_ms
            if filt is not None:
                pred = filt.apply(pred)
            body = await run_in_threadpool(describe, pred, timing, total_ms=1000 * (time.perf_counter() - start),
                                           decode_ms=max(0.0, decode_ms))
            body.update(frame=index, dropped=slot["dropped"])
            await ws.send_text(json.dumps(body))
    except WebSocketDisconnect:
        pass
    finally:
        receiver.cancel()


# --- routes: the API ------------------------------------------------------------------------

FORMATS = ("json", "png", "overlay")  # what /v1/predict answers with
api = APIRouter()  # handlers find the shared state as request.app.state.serve


@api.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    return request.app.state.serve.health()


@api.get("/metrics")
async def prometheus(request: Request) -> Response:
    return Response(generate_latest(request.app.state.serve.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@api.post("/v1/predict")
async def predict(request: Request, format: str = "json", conf: str | None = None) -> Response:
    """Segment (and detect in) one image: multipart field ``image`` or the raw image body.
    ``format``: json (default), png (the mask) or overlay (JPEG); ``conf``: detectors keep
    boxes scoring at least this (default: the server's threshold, see /healthz)."""
    start = time.perf_counter()
    served: ServedModel = request.app.state.serve
    if format not in FORMATS:
        return _error(400, f"format must be json, png or overlay, not {format!r}")
    if served.unavailable is not None:
        return _error(503, served.unavailable, **{"Retry-After": "1"})
    try:
        options, least = served.options(conf, None)
    except ValueError as e:
        return _error(400, str(e))
    got = await _queued(request, served, options, deadline=start + served.settings.timeout)
    if isinstance(got, Response):
        return got
    pred, timing, decode_ms = got
    pred = keep_boxes(pred, least)
    if format == "png":
        if pred.mask is None:
            return _error(400, "this model has no segmentation output; use format=json or overlay")
        return Response(await run_in_threadpool(lambda: _png(pred.colorized())), media_type="image/png")
    if format == "overlay":
        return Response(await run_in_threadpool(lambda: _jpeg(pred.overlay(served.settings.alpha))),
                        media_type="image/jpeg")
    body = await run_in_threadpool(describe, pred, timing, total_ms=1000 * (time.perf_counter() - start),
                                   decode_ms=decode_ms)
    return Response(json.dumps(body), media_type="application/json")


@api.websocket("/v1/stream")
async def stream(ws: WebSocket, smooth: float = 0.0, gate: float = 0.1, flow: bool = False,
                 conf: str | None = None) -> None:
    """Frames in (one encoded image per binary message), one JSON answer per frame out;
    the newest frame wins when frames come faster than the model (``dropped`` counts the
    others); ``smooth``/``gate``/``flow``: the temporal filter, per connection."""
    await ws.accept()
    served: ServedModel = ws.app.state.serve
    problem = served.unavailable
    if problem is None and served.streams >= served.settings.max_streams:
        problem = f"server busy: {served.streams} streams are open (--max-streams {served.settings.max_streams})"
    elif problem is None:
        try:
            filt = TemporalFilter(smooth, gate, flow=flow) if smooth else None
            options, least = served.options(conf, filt)
        except (ValueError, RuntimeError) as e:  # bad settings; flow without OpenCV
            problem = str(e)
    if problem is not None:
        await ws.send_json({"error": problem})
        await ws.close(code=1013 if problem.startswith("server busy") else 1008)
        return
    served.streams += 1
    try:
        await _serve_stream(ws, served, filt, options, least)
    finally:
        served.streams -= 1


# --- the page ---------------------------------------------------------------------------------

FAVICON = (b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" '
           b'fill="#2f6fd0"/><rect x="3" y="3" width="5" height="5" fill="#8fd14f"/><rect x="8" y="3" width="5" '
           b'height="5" fill="#f4c542"/><rect x="3" y="8" width="10" height="5" fill="#e8eef7"/></svg>')
page = APIRouter()  # the web page and what it links to


@page.get("/", response_class=HTMLResponse)
async def index() -> HTMLResponse:
    return HTMLResponse(resources.files("fcnkit.serve").joinpath("page.html").read_text())


@page.get("/favicon.svg")
@page.get("/favicon.ico")
async def favicon() -> Response:
    return Response(FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


@page.get("/docs", response_class=HTMLResponse)
async def docs(request: Request) -> HTMLResponse:  # the API at a glance, self-contained (Swagger UI would need a CDN)
    return HTMLResponse(api_page(request.app.openapi()))


def api_page(schema: dict) -> str:
    """A plain HTML list of the service's endpoints from its OpenAPI schema (``/openapi.json``)."""
    rows = []
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            params = ", ".join(p["name"] for p in op.get("parameters", []))
            doc = html.escape(op.get("description") or op.get("summary") or "")
            rows.append(f"<tr><td><code>{method.upper()} {html.escape(path)}</code></td>"
                        f"<td>{html.escape(params)}</td><td>{doc}</td></tr>")
    return ("<!doctype html><html lang=en><meta charset=utf-8><title>fcnkit API</title>"
            "<style>body{font:15px system-ui,sans-serif;margin:24px}td{padding:4px 12px;vertical-align:top;"
            "border-bottom:1px solid #ddd}</style><h1>fcnkit API</h1><p>The full schema: "
            "<a href=openapi.json>/openapi.json</a> (load it into any OpenAPI viewer). The page: <a href=.>/</a>.</p>"
            f"<table><tr><th>endpoint</th><th>query</th><th>what</th></tr>{''.join(rows)}</table></html>")


# --- the app ----------------------------------------------------------------------------------

def create_app(model: Any, settings: ServeSettings = ServeSettings(), *, name: str | None = None) -> Any:
    """The service for ``model`` (see ``ServedModel``): the page and the API over one model,
    behind the body limit and the request counters. ``name`` is what the page shows (default:
    the model file's name; ``fcnkit serve`` passes the name the user gave, e.g. a weights name)."""
    served = ServedModel(model, settings, name)
    app = FastAPI(title="fcnkit", lifespan=served.lifespan, docs_url=None, redoc_url=None)
    app.state.serve = served
    app.include_router(page)
    app.include_router(api)
    return CountRequests(LimitBody(app, settings.max_body), served.metrics)


__all__ = ["DEFAULT_MAX_BODY", "LimitBody", "ServeSettings", "ServedModel", "create_app", "describe"]
