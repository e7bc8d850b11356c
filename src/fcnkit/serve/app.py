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
"""

from __future__ import annotations

import asyncio
import base64
import html
import io
import json
import math
import sys
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..extras import require

# the serve extra, checked before its imports: one line naming it instead of an ImportError
require("serve", "fastapi", "multipart", "prometheus_client")

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect  # noqa: E402
from fastapi.responses import HTMLResponse, JSONResponse, Response  # noqa: E402
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,  # noqa: E402
                               generate_latest)
from starlette.concurrency import run_in_threadpool  # noqa: E402
from starlette.requests import ClientDisconnect  # noqa: E402

from ..data.image_io import ImageReadError, NotAnImage, TooManyPixels
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


CONF_FLOOR = 0.05  # the lowest box score a request can ask for (the page's threshold slider starts here)
FAVICON = (b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" '
           b'fill="#2f6fd0"/><rect x="3" y="3" width="5" height="5" fill="#8fd14f"/><rect x="8" y="3" width="5" '
           b'height="5" fill="#f4c542"/><rect x="3" y="8" width="10" height="5" fill="#e8eef7"/></svg>')


def _options(predictor: Predictor, conf: str | None, filt: "TemporalFilter | None") -> dict[str, Any]:
    """What a request asks of ``predict_batch`` (the batcher runs like requests together):
    probabilities for a temporal filter, a detector's box threshold (``conf`` as given in the
    query; 0 means every box down to CONF_FLOOR). ValueError for a bad ``conf``."""
    options: dict[str, Any] = {"probabilities": True} if filt is not None else {}
    if conf is not None:
        try:
            value = float(conf)
        except ValueError:
            value = math.nan
        if not CONF_FLOOR <= value <= 1 and not value == 0:
            raise ValueError(f"conf must be a score in [{CONF_FLOOR}, 1] (0: every box down to {CONF_FLOOR}), "
                             f"not {conf!r}")
        if predictor.detection:
            options["conf"] = max(value, CONF_FLOOR)
    return options


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


async def _serve_stream(ws: WebSocket, state: dict, settings: ServeSettings, filt: TemporalFilter | None,
                        options: dict[str, Any]) -> None:
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
    batcher = state["batcher"]
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
                image = await run_in_threadpool(decode_image_bytes, data, max_pixels=settings.max_pixels,
                                                source=f"frame {index}")
                pred, timing = await batcher.submit(image, **options)
            except (ImageReadError, QueueFull, Closed) as e:
                await ws.send_json({"frame": index, "error": str(e), "dropped": slot["dropped"]})
                continue
            decode_ms = 1000 * (time.perf_counter() - start) - timing.queue_ms - timing.inference_ms
            if filt is not None:
                pred = filt.apply(pred, image)
            body = await run_in_threadpool(describe, pred, timing, total_ms=1000 * (time.perf_counter() - start),
                                           decode_ms=max(0.0, decode_ms))
            body.update(frame=index, dropped=slot["dropped"])
            await ws.send_text(json.dumps(body))
    except WebSocketDisconnect:
        pass
    finally:
        receiver.cancel()


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(image) -> bytes:
    buf = io.BytesIO()
    fit_jpeg(image).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


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


def create_app(model: Any, settings: ServeSettings = ServeSettings(), *, name: str | None = None) -> Any:
    """The service for ``model``: a ready ``Predictor`` (what ``fcnkit serve`` passes, having
    loaded it first so a bad model fails at once), or anything ``Predictor`` takes, loaded in
    the background while ``/healthz`` answers 503. ``name`` is what the page shows (default:
    the model file's name; ``fcnkit serve`` passes the name the user gave, e.g. a weights name)."""
    state: dict[str, Any] = {"predictor": None, "batcher": None, "error": None}
    metrics = _Metrics(settings.max_batch, lambda: state["batcher"].depth if state["batcher"] else 0)
    source = model.backend.source if isinstance(model, Predictor) else model
    name = Path(str(name or source)).name  # never a server path

    def load() -> None:
        try:
            predictor = model if isinstance(model, Predictor) else Predictor(
                model, device=settings.device, max_memory=settings.max_memory, conf=settings.conf, progress=False)
            state["batcher"] = MicroBatcher(lambda images, **kw: predictor.predict_batch(images, **kw),
                                            max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms,
                                            max_queue=settings.max_queue, on_batch=metrics.on_batch)
            state["predictor"] = predictor
        except Exception as e:  # noqa: BLE001 - the log has it; HTTP answers say only that loading failed
            state["error"] = "the model failed to load"
            print(f"fcnkit serve: cannot load {model}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)

    async def lifespan(app: FastAPI):
        loader = threading.Thread(target=load, name="fcnkit-load", daemon=True)
        loader.start()
        if isinstance(model, Predictor):
            loader.join()  # nothing slow to wait for
        app.state.loader = loader
        yield
        if state["batcher"] is not None:  # uvicorn has stopped accepting and finished in-flight requests
            await run_in_threadpool(state["batcher"].close)

    app = FastAPI(title="fcnkit", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.serve = state

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files("fcnkit.serve").joinpath("page.html").read_text())

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        if state["predictor"] is not None:
            p = state["predictor"]
            return JSONResponse({"status": "ok", "model": name, "task": p.backend.task,
                                 "backend": p.backend.backend, "classes": p.classes, "box_classes": p.box_classes,
                                 "conf": p.conf if p.detection else None})
        if state["error"] is not None:
            return JSONResponse({"status": "failed", "error": state["error"]}, status_code=503)
        return JSONResponse({"status": "loading"}, status_code=503)

    @app.get("/favicon.svg")
    @app.get("/favicon.ico")
    async def favicon() -> Response:
        return Response(FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})

    @app.get("/docs", response_class=HTMLResponse)
    async def docs() -> HTMLResponse:  # the API at a glance, self-contained (Swagger UI would need a CDN)
        return HTMLResponse(api_page(app.openapi()))

    streams = {"open": 0}

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket, smooth: float = 0.0, gate: float = 0.1, conf: str | None = None) -> None:
        """Frames in (one encoded image per binary message), one JSON answer per frame out;
        the newest frame wins when frames come faster than the model (``dropped`` counts the
        others); ``smooth``/``gate``: the temporal filter, per connection."""
        await ws.accept()
        problem = None
        if state["batcher"] is None:
            problem = "the model is still loading" if state["error"] is None else state["error"]
        elif streams["open"] >= settings.max_streams:
            problem = f"server busy: {streams['open']} streams are open (--max-streams {settings.max_streams})"
        else:
            try:
                filt = TemporalFilter(smooth, gate) if smooth else None
                options = _options(state["predictor"], conf, filt)
            except ValueError as e:
                problem = str(e)
        if problem is not None:
            await ws.send_json({"error": problem})
            await ws.close(code=1013 if problem.startswith("server busy") else 1008)
            return
        streams["open"] += 1
        try:
            await _serve_stream(ws, state, settings, filt, options)
        finally:
            streams["open"] -= 1

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/predict")
    async def predict(request: Request, format: str = "json", conf: str | None = None) -> Response:
        """Segment (and detect in) one image: multipart field ``image`` or the raw image body.
        ``format``: json (default), png (the mask) or overlay (JPEG); ``conf``: detectors keep
        boxes scoring at least this (default: the server's threshold, see /healthz)."""
        start = time.perf_counter()
        if format not in ("json", "png", "overlay"):
            return _error(400, f"format must be json, png or overlay, not {format!r}")
        batcher = state["batcher"]
        if batcher is None:
            return _error(503, "the model is still loading" if state["error"] is None else state["error"],
                          **{"Retry-After": "1"})
        try:
            options = _options(state["predictor"], conf, None)
        except ValueError as e:
            return _error(400, str(e))
        try:  # a place in the queue first: a request beyond it never reads or decodes its upload
            ticket = batcher.reserve()
        except QueueFull as e:
            return _error(503, f"server busy: {e}", **{"Retry-After": "1"})
        except Closed as e:
            return _error(503, str(e), **{"Retry-After": "5"})
        try:
            got = await _read_image(request, settings)
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
        deadline = start + settings.timeout
        while not waiting.done():
            await asyncio.wait({waiting}, timeout=min(DISCONNECT_POLL, max(0.0, deadline - time.perf_counter())))
            if waiting.done():
                break
            gone = await request.is_disconnected()
            if gone or time.perf_counter() >= deadline:
                waiting.cancel()  # its queued work is dropped
                if gone:
                    return Response(status_code=499)
                return _error(504, f"not answered within --timeout {settings.timeout:g} s; try a smaller image "
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
        if format == "png":
            if pred.mask is None:
                return _error(400, "this model has no segmentation output; use format=json or overlay")
            return Response(await run_in_threadpool(lambda: _png(pred.colorized())), media_type="image/png")
        if format == "overlay":
            return Response(await run_in_threadpool(lambda: _jpeg(pred.overlay(settings.alpha))),
                            media_type="image/jpeg")
        body = await run_in_threadpool(describe, pred, timing, total_ms=1000 * (time.perf_counter() - start),
                                       decode_ms=decode_ms)
        return Response(json.dumps(body), media_type="application/json")

    return CountRequests(LimitBody(app, settings.max_body), metrics)


__all__ = ["DEFAULT_MAX_BODY", "LimitBody", "ServeSettings", "create_app", "describe"]
