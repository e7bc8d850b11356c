"""``fcnkit serve MODEL``: an HTTP service and a web page for a model, on uvicorn.

Endpoints: ``GET /`` (the page), ``GET /healthz`` (200 once the model is loaded, 503
before), ``GET /metrics`` (Prometheus text), ``POST /v1/predict`` (multipart field
``image`` or the raw image with an ``image/*`` content type; ``?format=png`` for the
palette mask, ``?format=overlay`` for a JPEG overlay). SIGTERM/SIGINT stop accepting,
finish what is queued and exit 0. To scale out, run one process per core group or
machine (each with its own model) behind any load balancer: the service keeps no state.
"""

from __future__ import annotations

import argparse
import signal

from .common import examples


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a model over HTTP, with a web page (needs fcnkit[serve])",
                       description=__doc__,
                       epilog=examples("fcnkit serve camvid-fcn8s-lite0",
                                       "fcnkit serve model.onnx --host 0.0.0.0 --port 8080 --max-batch 8"))
    p.add_argument("model", help="weights name, .pt / .safetensors, .onnx or OpenVINO .xml (as fcnkit predict)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-batch", type=int, default=4, help="images per forward pass at most (default 4)")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="how long a request waits for others of its size to fill a batch (default 5 ms)")
    p.add_argument("--max-queue", type=int, default=64,
                   help="requests waiting at most; more get 503 with Retry-After (default 64)")
    p.add_argument("--max-body", default="20M", help="largest request body (default 20M); larger get 413")
    p.add_argument("--max-memory", default=None, help="tiling budget for large images (default 2G)")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="largest image an upload may decode to, in pixels (default 16000000, 4000x4000); "
                        "larger get 413 before they are decoded")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds a request may wait and compute (default 60); later it gets 504 and its work "
                        "is dropped, as is the work of clients that hang up")
    p.add_argument("--backend", default=None, metavar="DEVICE",
                   help="torch device for .pt / .safetensors models (default: cuda if available, else cpu); "
                        ".onnx and .xml files run on ONNX Runtime / OpenVINO")
    p.add_argument("--conf", type=float, default=None,
                   help="detectors: answer boxes whose score is at least this (default: the model's recommended "
                        "threshold, else 0.3)")
    p.add_argument("--max-streams", type=int, default=4,
                   help="WebSocket streams (/v1/stream: the page's live mode) open at once (default 4; 0: none)")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from ..extras import require

    require("serve", "uvicorn", "fastapi", "multipart", "prometheus_client", "websockets")
    import uvicorn

    from ..inference.tiling import parse_memory
    from ..serve.app import DEFAULT_MAX_PIXELS, DEFAULT_TIMEOUT, ServeSettings, create_app, open_predictor

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535 (0: any free port), not {args.port}")
    # every option checked before anything is loaded (ServeSettings validates the limits)
    settings = ServeSettings(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
                             max_body=parse_memory(args.max_body), max_memory=args.max_memory, device=args.backend,
                             conf=args.conf, max_pixels=DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels,
                             timeout=DEFAULT_TIMEOUT if args.timeout is None else args.timeout,
                             max_streams=args.max_streams)
    if args.max_memory is not None:
        parse_memory(args.max_memory)
    # the model loads before the server starts: one that cannot load is a one-line error and exit 2,
    # not a server answering 503 forever
    predictor = open_predictor(args.model, settings)  # one that cannot run fails here too
    print(f"fcnkit serve {args.model} on http://{args.host}:{args.port}/ (max batch {args.max_batch}, "
          f"wait {args.max_wait_ms:g} ms, queue {args.max_queue}, body {args.max_body})", flush=True)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler it found:
    # make that a no-op, so a finished graceful shutdown exits 0 (not -15 / KeyboardInterrupt)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.run(create_app(predictor, settings, name=args.model), host=args.host, port=args.port, log_level="warning",
                timeout_graceful_shutdown=30, ws_max_size=settings.max_body)  # a stream's frame: as an upload
    print("fcnkit serve: stopped", flush=True)
    return 0
