"""Red-team cases for `fcnkit serve` (issue 25), replayed so they stay fixed: one small upload
cannot tie the server up, options are checked before anything starts, a model that cannot
load fails fast, errors never show server paths, hung-up clients cost nothing."""

from __future__ import annotations

import asyncio
import io
import math
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from fcnkit.serve.app import ServeSettings, create_app  # noqa: E402
from fcnkit.serve.batching import MicroBatcher, QueueFull  # noqa: E402
from fcnkit.serve.process import spawn_server  # noqa: E402
from predict_fixtures import scene, seg_spec  # noqa: E402


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


class Gated:
    """A model whose forward pass waits for ``gate`` (how long inference takes, controlled)."""

    def __init__(self) -> None:
        self.gate, self.calls = threading.Event(), []
        self.spec = seg_spec(2, classes=["a", "b"])

    def __call__(self, x):
        import torch

        self.calls.append(tuple(x.shape))
        self.gate.wait(30)
        return {"seg": torch.zeros(x.shape[0], 2, *x.shape[-2:])}


def _ready(c: TestClient) -> None:
    deadline = time.time() + 60
    while c.get("/healthz").status_code != 200:
        assert time.time() < deadline, c.get("/healthz").text
        time.sleep(0.05)


def test_a_small_file_declaring_a_huge_image_is_refused_before_decoding() -> None:
    """25.1: a 60 KB all-zero 7900x7900 PNG took 81 s and 1.7 GB; now 413 from its header."""
    bomb = io.BytesIO()
    Image.new("L", (7900, 7900)).save(bomb, format="PNG", optimize=True)
    assert len(bomb.getvalue()) < 100_000
    model = Gated()
    model.gate.set()
    with TestClient(create_app(model)) as c:
        _ready(c)
        calls = len(model.calls)
        t0 = time.perf_counter()
        r = c.post("/v1/predict", content=bomb.getvalue(), headers={"content-type": "image/png"})
        assert r.status_code == 413 and "7900x7900" in r.json()["error"]
        assert "--max-pixels 16000000" in r.json()["error"]
        assert time.perf_counter() - t0 < 2 and len(model.calls) == calls  # never decoded, never inferred


def test_admission_comes_before_the_upload_is_decoded() -> None:
    """25.1: --max-queue bounds memory only if a refused request never decodes its upload."""
    import fcnkit.serve.app as app_module

    model = Gated()
    decoded = []
    real = app_module.decode_image_bytes

    def counting(data, **kw):
        decoded.append(len(data))
        return real(data, **kw)

    app_module.decode_image_bytes = counting
    try:
        with TestClient(create_app(model, ServeSettings(max_queue=1, max_batch=1, max_wait_ms=0))) as c:
            model.gate.set()
            _ready(c)  # (the warm-up's forward pass went through the open gate)
            model.gate.clear()
            body = _png(scene(16, 16))
            results = {}

            def post(key):
                results[key] = c.post("/v1/predict", content=body, headers={"content-type": "image/png"})

            threads = []
            for key, n in (("running", 1), ("queued", 2)):  # one computed (held at the gate), one waiting
                threads.append(threading.Thread(target=post, args=(key,)))
                threads[-1].start()
                deadline = time.time() + 10
                while len(decoded) < n and time.time() < deadline:
                    time.sleep(0.01)
                time.sleep(0.2)
            r = c.post("/v1/predict", content=body, headers={"content-type": "image/png"})
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert len(decoded) == 2  # the refused upload was never decoded
            model.gate.set()
            for t in threads:
                t.join(30)
            assert results["running"].status_code == 200 and results["queued"].status_code == 200
    finally:
        app_module.decode_image_bytes = real


def test_a_request_past_its_deadline_is_answered_504_and_its_queued_work_dropped() -> None:
    model = Gated()
    with TestClient(create_app(model, ServeSettings(max_batch=1, max_wait_ms=0, timeout=0.5))) as c:
        model.gate.set()
        _ready(c)
        model.gate.clear()
        body_a, body_b = _png(scene(16, 16)), _png(scene(24, 24))
        out = {}
        ta = threading.Thread(target=lambda: out.setdefault("a", c.post("/v1/predict", content=body_a,
                                                                         headers={"content-type": "image/png"})))
        ta.start()
        time.sleep(0.1)
        r = c.post("/v1/predict", content=body_b, headers={"content-type": "image/png"})  # queued behind a
        assert r.status_code == 504 and "--timeout 0.5" in r.json()["error"]
        n = len(model.calls)
        model.gate.set()
        ta.join(30)
        time.sleep(0.3)
        # a's deadline passed too, but b's queued work never ran: no forward pass at 24x24
        assert (1, 3, 24, 24) not in model.calls[n - 1:] and out["a"].status_code == 504


def test_a_client_that_hangs_up_while_queued_costs_no_inference() -> None:
    ran: list = []
    gate = threading.Event()
    batcher = MicroBatcher(lambda ims: (gate.wait(10), ran.append(len(ims)), [1] * len(ims))[2], max_batch=1,
                           max_wait_ms=0, max_queue=4)

    async def main():
        first = asyncio.ensure_future(batcher.submit(np.zeros((2, 2, 3), np.uint8)))
        await asyncio.sleep(0.05)
        left = asyncio.ensure_future(batcher.submit(np.zeros((2, 2, 3), np.uint8)))
        await asyncio.sleep(0.05)
        left.cancel()  # what the server does when the client disconnects
        third = asyncio.ensure_future(batcher.submit(np.zeros((2, 2, 3), np.uint8)))
        await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.gather(first, third)

    results = asyncio.run(main())
    batcher.close()
    assert [r for r, _ in results] == [1, 1] and ran == [1, 1]  # two forward passes, not three
    # a reserved place counts against the queue until it is used or released
    b = MicroBatcher(lambda ims: [0] * len(ims), max_queue=1)
    t = b.reserve()
    with pytest.raises(QueueFull):
        b.reserve()
    t.release()
    b.reserve().release()
    b.close()


def test_a_hung_up_client_of_a_real_server_is_dropped(model_file) -> None:
    """Over loopback: a client that sends its upload and hangs up while queued behind a long
    request costs no forward pass (the server checks for disconnects while it waits)."""
    base, proc = spawn_server(model_file, "--max-batch", "1", "--max-wait-ms", "0")
    try:
        import httpx

        host, port = base.removeprefix("http://").split(":")
        big = _png(scene(1500, 2000, seed=2))  # seconds of work for the tiny model on 2 cores
        small = _png(scene(32, 48, seed=3))

        def batches() -> float:
            text = httpx.get(f"{base}/metrics").text
            return float(next(line.split()[-1] for line in text.splitlines()
                              if line.startswith("fcnkit_batch_size_count")))

        before = batches()
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("big", httpx.post(
            f"{base}/v1/predict", content=big, headers={"content-type": "image/png"}, timeout=120)))
        t.start()
        time.sleep(0.5)
        with socket.create_connection((host, int(port))) as s:  # queued behind the big one, then gone
            s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                      + f"Content-Length: {len(small)}\r\n\r\n".encode() + small)
            time.sleep(0.3)
        t.join(120)
        assert out["big"].status_code == 200
        time.sleep(1.0)
        assert batches() - before == 1  # the big one only
        for _ in range(5):  # 25.10: clients that hang up mid-upload (each used to log a 70-line traceback)
            with socket.create_connection((host, int(port))) as s:
                s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                          + f"Content-Length: {len(small)}\r\n\r\n".encode() + small[:100])
        time.sleep(1.0)
        assert httpx.get(f"{base}/healthz").status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)
    log = proc.stdout.read()
    assert "Traceback" not in log and "Exception in ASGI" not in log, log[-3000:]


@pytest.mark.parametrize("options,message", [
    (["--max-wait-ms", "nan"], "max-wait-ms must be a number"),
    (["--max-wait-ms", "-100"], "max-wait-ms must be a number"),
    (["--port", "70000"], "--port must be in 0..65535"),
    (["--max-queue", "0"], "max-queue must be a whole number >= 1"),
    (["--timeout", "inf"], "timeout must be a number"),
    (["--max-pixels", "0"], "max-pixels must be a whole number >= 1"),
    (["--conf", "2"], "conf must be a score in [0, 1]"),
])
def test_serve_options_are_checked_before_anything_starts(options, message, model_file) -> None:
    """25.4: a NaN wait hung every prediction while /healthz said 200; port 70000 gave a traceback."""
    proc = subprocess.run([sys.executable, "-m", "fcnkit", "serve", str(model_file), *options],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_a_model_that_cannot_load_fails_fast(tmp_path) -> None:
    """25.3: `fcnkit serve /nonexistent/model.pt` used to serve 503s forever and exit 0."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "fcnkit", "serve", str(tmp_path / "nowhere" / "model.pt"),
                           "--port", "0"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "model.pt" in proc.stderr and "Traceback" not in proc.stderr
    assert time.perf_counter() - t0 < 60


def test_settings_refuse_non_finite_and_out_of_range_numbers() -> None:
    for bad in (dict(max_wait_ms=math.nan), dict(timeout=0), dict(max_batch=0), dict(alpha=2.0),
                dict(max_pixels=1.5)):
        with pytest.raises(ValueError):
            ServeSettings(**bad)


def test_a_chunked_upload_over_the_body_limit_is_413_not_500() -> None:
    """25.8: a body without Content-Length, streamed past --max-body, gave 500 and a traceback."""
    model = Gated()
    model.gate.set()
    with TestClient(create_app(model, ServeSettings(max_body=10_000))) as c:
        _ready(c)

        def chunks():
            for _ in range(10):
                yield b"\0" * 4096

        r = c.post("/v1/predict", content=chunks(), headers={"content-type": "image/png"})
        assert r.status_code == 413 and "--max-body (10000 bytes)" in r.json()["error"]
        assert c.get("/healthz").status_code == 200
