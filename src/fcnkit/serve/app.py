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

import base64
import io
import json
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

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import HTMLResponse, JSONResponse, Response  # noqa: E402
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,  # noqa: E402
                               generate_latest)
from starlette.concurrency import run_in_threadpool  # noqa: E402

from ..data.image_io import ImageReadError, NotAnImage
from ..inference.images import decode_image_bytes
from ..inference.postprocess import fit_jpeg
from ..inference.predictor import Prediction, Predictor
from .batching import Closed, MicroBatcher, QueueFull, Timing

DEFAULT_MAX_BODY = 20 * 2**20
DEFAULT_MAX_PIXELS = 64_000_000  # an upload may decode to at most this many pixels (8000 x 8000)
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
        counts = np.bincount(pred.mask.ravel().astype(np.int64), minlength=len(pred.palette))
        out["fractions"] = [round(float(c) / pred.mask.size, 6) for c in counts]
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


def create_app(model: Any, settings: ServeSettings = ServeSettings()) -> FastAPI:
    """The service for ``model`` (anything ``Predictor`` takes)."""
    state: dict[str, Any] = {"predictor": None, "batcher": None, "error": None}
    metrics = _Metrics(settings.max_batch, lambda: state["batcher"].depth if state["batcher"] else 0)

    def load() -> None:
        try:
            predictor = Predictor(model, device=settings.device, max_memory=settings.max_memory, conf=settings.conf,
                                  progress=False)
            state["batcher"] = MicroBatcher(lambda images: predictor.predict_batch(images),
                                            max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms,
                                            max_queue=settings.max_queue, on_batch=metrics.on_batch)
            state["predictor"] = predictor
        except Exception as e:  # noqa: BLE001 - reported by /healthz and the log
            state["error"] = f"{type(e).__name__}: {e}"
            print(f"fcnkit serve: cannot load {model}: {state['error']}", flush=True)

    async def lifespan(app: FastAPI):
        loader = threading.Thread(target=load, name="fcnkit-load", daemon=True)
        loader.start()
        app.state.loader = loader
        yield
        if state["batcher"] is not None:  # uvicorn has stopped accepting and finished in-flight requests
            await run_in_threadpool(state["batcher"].close)

    app = FastAPI(title="fcnkit", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.serve = state

    @app.middleware("http")
    async def count(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        path = request.url.path if request.url.path in ("/", "/healthz", "/metrics", "/v1/predict") else "other"
        metrics.requests.labels(path, str(response.status_code)).inc()
        if response.status_code >= 400:
            metrics.errors.labels(str(response.status_code)).inc()
        if path == "/v1/predict":
            metrics.latency.observe(time.perf_counter() - start)
        return response

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files("fcnkit.serve").joinpath("page.html").read_text())

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        if state["predictor"] is not None:
            p = state["predictor"]
            return JSONResponse({"status": "ok", "model": str(model), "task": p.backend.task,
                                 "backend": p.backend.backend, "classes": p.classes, "box_classes": p.box_classes})
        if state["error"] is not None:
            return _error(503, f"model failed to load: {state['error']}")
        return JSONResponse({"status": "loading"}, status_code=503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/predict")
    async def predict(request: Request, format: str = "json") -> Response:
        start = time.perf_counter()
        if format not in ("json", "png", "overlay"):
            return _error(400, f"format must be json, png or overlay, not {format!r}")
        if state["batcher"] is None:
            return _error(503, "the model is still loading" if state["error"] is None else state["error"],
                          **{"Retry-After": "1"})
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if ctype == "multipart/form-data":
                try:
                    form = await request.form(max_files=1, max_fields=8)
                except BodyTooLarge:
                    raise
                except Exception as e:  # noqa: BLE001 - a malformed multipart body
                    return _error(400, f"malformed multipart body ({type(e).__name__}: {e})")
                upload = form.get("image")
                if upload is None or isinstance(upload, str):
                    return _error(400, "multipart upload without a file field named 'image'")
                data, source = await upload.read(), upload.filename or "upload"
            elif ctype.startswith("image/") or ctype == "application/octet-stream":
                data, source = await request.body(), "body"
            else:
                return _error(415, f"unsupported content type {ctype or 'none'!r}: send multipart/form-data with "
                                   f"a file field 'image', or the image itself with an image/* content type")
        except BodyTooLarge:
            return _error(413, f"request body is larger than --max-body ({settings.max_body} bytes)",
                          Connection="close")
        if not data:
            return _error(400, f"{source}: empty upload")
        t0 = time.perf_counter()
        try:
            image = await run_in_threadpool(decode_image_bytes, data, max_pixels=settings.max_pixels, source=source)
        except NotAnImage as e:
            return _error(415, str(e))
        except ImageReadError as e:
            return _error(400, str(e))
        decode_ms = 1000 * (time.perf_counter() - t0)
        try:
            pred, timing = await state["batcher"].submit(image)
        except QueueFull as e:
            return _error(503, f"server busy: {e}", **{"Retry-After": "1"})
        except Closed as e:
            return _error(503, str(e), **{"Retry-After": "5"})
        except Exception as e:  # noqa: BLE001 - an inference failure answers this request only
            return _error(500, f"inference failed ({type(e).__name__}: {e})")
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

    return LimitBody(app, settings.max_body)


__all__ = ["DEFAULT_MAX_BODY", "LimitBody", "ServeSettings", "create_app", "describe"]
