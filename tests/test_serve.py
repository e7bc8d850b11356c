"""fcnkit serve: the API, bad input, micro-batching, back-pressure, shutdown, the page."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from fcnkit.extras import installed  # noqa: E402
from fcnkit.inference import Predictor  # noqa: E402
from fcnkit.serve.app import ServeSettings, create_app  # noqa: E402
from fcnkit.serve.batching import MicroBatcher, QueueFull  # noqa: E402
from fcnkit.serve.process import spawn_server  # noqa: E402
from predict_fixtures import scene, seg_spec  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _ready(client: TestClient, timeout: float = 60) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = client.get("/healthz")
        if r.status_code == 200:
            return r.json()
        time.sleep(0.05)
    raise AssertionError(f"not ready: {r.status_code} {r.text}")


@pytest.fixture(scope="module")
def client(model_file):
    with TestClient(create_app(model_file, ServeSettings(max_batch=4, max_wait_ms=20, max_body=2**20))) as c:
        _ready(c)
        yield c


def test_predict_json_png_and_overlay_match_the_predictor(client, model_file) -> None:
    image = scene(45, 61, seed=3)
    expected = Predictor(model_file).predict(image).mask
    r = client.post("/v1/predict", files={"image": ("x.png", _png(image), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["width"], body["height"], body["classes"]) == (61, 45, ["red", "green", "blue"])
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["mask_png"]))))
    assert np.array_equal(mask, expected)
    assert body["fractions"] == [round(float((expected == k).mean()), 6) for k in range(3)]
    assert body["timings_ms"]["batch_size"] >= 1 and body["timings_ms"]["total"] > 0
    raw = client.post("/v1/predict?format=png", content=_png(image), headers={"content-type": "image/png"})
    assert raw.headers["content-type"] == "image/png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(raw.content))), expected)
    over = client.post("/v1/predict?format=overlay", content=_png(image), headers={"content-type": "image/png"})
    assert over.headers["content-type"] == "image/jpeg" and Image.open(io.BytesIO(over.content)).size == (61, 45)


def test_bad_input_gets_json_errors_and_the_server_stays_healthy(client) -> None:
    good = _png(scene(32, 40))
    cases = {
        "not an image": (b"hello, not an image", "image/png", 415, "not an image file"),
        "truncated": (good[: len(good) // 2], "image/png", 400, "corrupt or truncated"),
        "wrong type": (b"{}", "application/json", 415, "unsupported content type"),
        "empty": (b"", "image/png", 400, "empty upload"),
    }
    for name, (data, ctype, status, text) in cases.items():
        r = client.post("/v1/predict", content=data, headers={"content-type": ctype})
        assert r.status_code == status and text in r.json()["error"], (name, r.status_code, r.text)
    r = client.post("/v1/predict", files={"other": ("x.png", good, "image/png")})
    assert r.status_code == 400 and "field named 'image'" in r.json()["error"]
    big = client.post("/v1/predict", content=good + bytes(2**20), headers={"content-type": "image/png"})
    assert big.status_code == 413 and "max-body" in big.json()["error"]  # over this app's 1 MiB, unread
    for _ in range(20):  # a row of corrupt uploads
        assert client.post("/v1/predict", content=good[:100], headers={"content-type": "image/png"}).status_code == 400
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.post("/v1/predict", content=good, headers={"content-type": "image/png"}).status_code == 200


def test_decompression_bomb_under_the_body_limit_is_refused_by_its_header(model_file) -> None:
    bomb = io.BytesIO()
    Image.new("L", (12000, 12000)).save(bomb, format="PNG")  # 144 Mpixel in ~140 KB
    with TestClient(create_app(model_file, ServeSettings(max_pixels=10_000_000))) as c:
        _ready(c)
        r = c.post("/v1/predict", content=bomb.getvalue(), headers={"content-type": "image/png"})
        assert r.status_code == 413 and "decompression bomb" in r.json()["error"]
        assert "--max-pixels 10000000" in r.json()["error"]


def test_metrics_are_prometheus_text(client) -> None:
    client.post("/v1/predict", content=_png(scene(32, 32)), headers={"content-type": "image/png"})
    text = client.get("/metrics").text
    for series in ("fcnkit_requests_total{", "fcnkit_errors_total{", "fcnkit_queue_depth ",
                   "fcnkit_batch_size_bucket{", "fcnkit_request_seconds_bucket{"):
        assert series in text, series
    ok = [line for line in text.splitlines() if line.startswith('fcnkit_requests_total{path="/v1/predict",status="200"}')]
    assert ok and float(ok[0].split()[-1]) >= 1


def test_healthz_is_503_until_the_model_is_loaded(tmp_path) -> None:
    release = threading.Event()

    class Slow:  # a model whose first forward pass (the server's warm-up at load) waits for the test
        def __init__(self) -> None:
            self.spec = seg_spec(2, classes=["a", "b"])

        def __call__(self, x):
            release.wait(30)
            import torch
            return {"seg": torch.zeros(x.shape[0], 2, *x.shape[-2:])}

    with TestClient(create_app(Slow())) as c:
        assert c.get("/healthz").status_code == 503 and c.get("/healthz").json()["status"] == "loading"
        r = c.post("/v1/predict", content=_png(scene(8, 8)), headers={"content-type": "image/png"})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        release.set()
        assert _ready(c)["classes"] == ["a", "b"]
    with TestClient(create_app(tmp_path / "missing.pt")) as c:
        time.sleep(0.5)
        r = c.get("/healthz")
        # loading failed: said, but no server path or exception text in any answer (the log has them)
        assert r.status_code == 503 and r.json() == {"status": "failed", "error": "the model failed to load"}
        r = c.post("/v1/predict", content=_png(scene(8, 8)), headers={"content-type": "image/png"})
        assert r.status_code == 503 and str(tmp_path) not in r.text and "Error" not in r.text


def test_micro_batching_groups_same_size_requests_and_keeps_their_order() -> None:
    seen: list[list[tuple[int, int]]] = []

    def run(images):
        seen.append([im.shape[:2] for im in images])
        return [int(im[0, 0, 0]) for im in images]

    batcher = MicroBatcher(run, max_batch=4, max_wait_ms=200, max_queue=16)

    async def main():
        images = [np.full((8, 8, 3), k, np.uint8) for k in range(8)] + [np.full((4, 6, 3), 9, np.uint8)]
        return await asyncio.gather(*(batcher.submit(im) for im in images))

    results = asyncio.run(main())
    batcher.close()
    assert [r for r, _ in results] == [0, 1, 2, 3, 4, 5, 6, 7, 9]  # each request gets its own answer
    assert sorted(len(b) for b in seen) == [1, 4, 4] and [(4, 6)] in seen  # sizes never mix
    assert {t.batch_size for _, t in results[:8]} == {4}


def test_a_full_queue_refuses_at_once_and_close_finishes_what_is_queued() -> None:
    gate = threading.Event()
    batcher = MicroBatcher(lambda ims: (gate.wait(10), [1] * len(ims))[1], max_batch=1, max_wait_ms=0, max_queue=2)

    async def main():
        first = asyncio.ensure_future(batcher.submit(np.zeros((2, 2, 3), np.uint8)))
        await asyncio.sleep(0.1)  # the worker holds the first request
        queued = [asyncio.ensure_future(batcher.submit(np.zeros((2, 2, 3), np.uint8))) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull):
            await batcher.submit(np.zeros((2, 2, 3), np.uint8))
        gate.set()
        return await asyncio.gather(first, *queued)

    results = asyncio.run(main())
    batcher.close()
    assert [r for r, _ in results] == [1, 1, 1]


# --- a real server on loopback ---------------------------------------------------------

@pytest.fixture
def server(model_file):
    """``fcnkit serve`` in its own process: (base URL, Popen)."""
    base, proc = spawn_server(model_file, "--max-queue", "4", "--max-batch", "2", "--max-wait-ms", "2",
                              "--max-body", "1M")
    yield base, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_burst_beyond_the_queue_gets_503s_and_no_crash(server) -> None:
    base, proc = server
    body = _png(scene(360, 480, seed=1))

    async def burst():
        async with httpx.AsyncClient(timeout=120) as c:
            return await asyncio.gather(*(c.post(f"{base}/v1/predict", content=body,
                                                 headers={"content-type": "image/png"}) for _ in range(40)))

    codes = [r.status_code for r in asyncio.run(burst())]
    assert set(codes) <= {200, 503} and codes.count(200) >= 4 and codes.count(503) >= 1, codes
    busy = next(r for r in asyncio.run(burst()) if r.status_code == 503)
    assert busy.headers["retry-after"] == "1" and "server busy" in busy.json()["error"]
    health = httpx.get(f"{base}/healthz")
    assert health.status_code == 200 and proc.poll() is None
    assert health.json()["model"] == "colour.pt"  # the name given on the command line, never a server path


def test_slow_and_dropped_clients_do_not_block_others(server) -> None:
    base, proc = server
    port = int(base.rsplit(":", 1)[1])
    body = _png(scene(64, 64))
    slow = socket.create_connection(("127.0.0.1", port))  # declares a body, then sends it byte by byte
    slow.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:10])
    dropped = socket.create_connection(("127.0.0.1", port))  # goes away mid-upload
    dropped.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 5000\r\n\r\n"
                    + body[:100])
    dropped.close()
    t = time.perf_counter()
    for _ in range(3):
        r = httpx.post(f"{base}/v1/predict", content=body, headers={"content-type": "image/png"}, timeout=30)
        assert r.status_code == 200
    assert time.perf_counter() - t < 20
    slow.sendall(body[10:])  # the slow client finishes and is answered too
    answer = slow.recv(65536).decode(errors="replace")
    slow.close()
    assert answer.startswith("HTTP/1.1 200")
    assert proc.poll() is None


def test_sigterm_finishes_queued_requests_and_exits_0(server) -> None:
    base, proc = server
    body = _png(scene(360, 480, seed=2))
    results: list[int] = []

    def post():
        try:
            results.append(httpx.post(f"{base}/v1/predict", content=body, headers={"content-type": "image/png"},
                                      timeout=60).status_code)
        except httpx.TransportError as e:
            results.append(type(e).__name__)

    threads = [threading.Thread(target=post) for _ in range(3)]
    for th in threads:
        th.start()
    time.sleep(0.3)  # the requests are in flight
    proc.send_signal(signal.SIGTERM)
    for th in threads:
        th.join(60)
    assert proc.wait(60) == 0
    assert results == [200, 200, 200], results


# --- the page in a real browser ----------------------------------------------------------

def _chromium() -> tuple[str, str] | None:
    for browser in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if os.path.exists(browser) and os.path.exists("/usr/bin/chromedriver"):
            return browser, "/usr/bin/chromedriver"
    return None


def _chrome(*extra: str):
    """A headless Chromium WebDriver (skips without Debian's chromium and chromium-driver)."""
    found = _chromium()
    if found is None:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1100",
                *extra):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(found[1]), options=options)


def test_live_mode_streams_a_camera_in_headless_chromium(tmp_path) -> None:
    """The page's live mode with Chromium's fake camera playing CamVid val frames (a y4m clip):
    frames go over the WebSocket and come back as masks of the camera's size, steadied by the
    temporal filter along the optical flow when "steady masks" is ticked."""
    from conftest import data_dir

    av = pytest.importorskip("av")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    clip = tmp_path / "camvid.y4m"
    with av.open(str(clip), "w", format="yuv4mpegpipe") as c:
        s = c.add_stream("rawvideo", rate=15)
        s.width, s.height, s.pix_fmt = 480, 360, "yuv420p"
        for png in sorted((data_dir("camvid") / "val").glob("*.png"))[:8]:
            frame = av.VideoFrame.from_ndarray(np.asarray(Image.open(png).convert("RGB")), format="rgb24")
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    driver = _chrome("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                     f"--use-file-for-fake-video-capture={clip}")
    base, proc = spawn_server("camvid-fcn8s-lite0")
    try:
        driver.get(base + "/")
        WebDriverWait(driver, 30).until(lambda d: "camvid-fcn8s-lite0" in d.find_element(By.ID, "model").text)
        if installed("cv2"):
            driver.find_element(By.ID, "steady").click()
        driver.find_element(By.ID, "camera").click()
        WebDriverWait(driver, 180).until(lambda d: int(d.find_element(By.TAG_NAME, "body").get_attribute(
            "data-live-frames") or 0) >= 3, message=driver.find_element(By.ID, "status").text)
        canvas = driver.find_element(By.ID, "overlay")
        assert (int(canvas.get_attribute("width")), int(canvas.get_attribute("height"))) == (480, 360)
        assert "frames/s" in driver.find_element(By.ID, "live-stats").text
        # read in one script: the legend is rebuilt with every answer (elements go stale between calls)
        shares = [float(t.rstrip("%")) for t in driver.execute_script(
            "return Array.from(document.querySelectorAll('#classes .share')).map((e) => e.textContent)")]
        assert abs(sum(shares) - 100) < 0.5 and max(shares) > 10  # a street, segmented
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "serve_live.png"))
        driver.find_element(By.ID, "stop").click()
        WebDriverWait(driver, 10).until(lambda d: "stopped" in d.find_element(By.ID, "status").text)
    finally:
        driver.quit()
        proc.terminate()
        proc.wait(30)


def test_the_page_in_headless_chromium(tmp_path) -> None:
    """Upload a CamVid frame through the file input; the overlay, legend and timing appear."""
    from conftest import data_dir

    from fcnkit.data.camvid import CLASSES as CAMVID_CLASSES
    from fcnkit.data.camvid import PALETTE as CAMVID_PALETTE

    frame = data_dir("camvid") / "val" / "0016E5_07959.png"
    driver = _chrome()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    base, proc = spawn_server("camvid-fcn8s-lite0")
    base += "/"
    try:
        driver.get(base)
        WebDriverWait(driver, 30).until(lambda d: "camvid-fcn8s-lite0" in d.find_element(By.ID, "model").text)
        driver.find_element(By.ID, "file").send_keys(str(frame))
        WebDriverWait(driver, 120).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-done") == "1")
        canvas = driver.find_element(By.ID, "overlay")
        assert (int(canvas.get_attribute("width")), int(canvas.get_attribute("height"))) == (480, 360)
        names = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#classes .name")]
        assert sorted(names) == sorted(CAMVID_CLASSES)
        shares = [float(e.text.rstrip("%")) for e in driver.find_elements(By.CSS_SELECTOR, "#classes .share")]
        assert abs(sum(shares) - 100) < 0.5 and max(shares) > 10  # a real segmentation, not one class
        assert shares == sorted(shares, reverse=True)  # the legend leads with what the picture is made of
        assert "server" in driver.find_element(By.ID, "status").text
        assert driver.find_element(By.ID, "get-mask").get_attribute("href").startswith("data:image/png;base64,")
        driver.execute_script("document.getElementById('get-overlay').click(); document.getElementById('get-json').click()")
        assert driver.find_element(By.ID, "get-overlay").get_attribute("href").startswith("data:image/png;base64,")
        assert driver.find_element(By.ID, "get-json").get_attribute("href").startswith("blob:")
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "serve_page.png"))
        assert (ARTIFACTS / "serve_page.png").stat().st_size > 10_000
        pixel = "return Array.from(document.getElementById('overlay').getContext('2d').getImageData(5, 5, 1, 1).data)"
        blended = driver.execute_script(pixel)
        Select(driver.find_element(By.ID, "view")).select_by_value("mask")  # mask only: a palette colour
        masked = driver.execute_script(pixel)
        assert masked[:3] in [list(c) for c in CAMVID_PALETTE] and masked != blended
        driver.save_screenshot(str(ARTIFACTS / "serve_page_mask.png"))
        junk = tmp_path / "notes.png"
        junk.write_bytes(b"not an image at all")
        driver.find_element(By.ID, "file").send_keys(str(junk))  # refused: the last answer must go
        WebDriverWait(driver, 30).until(lambda d: "error 415" in d.find_element(By.ID, "status").text)
        assert not driver.find_element(By.ID, "overlay").is_displayed()
        assert not driver.find_element(By.ID, "legend").is_displayed()
    finally:
        driver.quit()
        proc.terminate()
        proc.wait(30)


def test_favicon_and_a_self_contained_api_page(tmp_path, model_file) -> None:
    with TestClient(create_app(model_file)) as c:
        icon = c.get("/favicon.ico")
        assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
        assert icon.content.startswith(b"<svg")
        docs = c.get("/docs")
        assert docs.status_code == 200 and "POST /v1/predict" in docs.text and "openapi.json" in docs.text
        assert "cdn" not in docs.text.lower() and "<script" not in docs.text  # nothing fetched from elsewhere
        assert "/v1/predict" in c.get("/openapi.json").json()["paths"]


def test_a_detector_answers_boxes_with_names() -> None:
    from conftest import data_dir

    import torch
    from torchvision.ops import box_iou

    from fcnkit.data.voc_xml import VOCDetection

    val = VOCDetection(data_dir("raccoon"), "val")
    photo = val.files[0][0].read_bytes()
    truth = val[0][1]["boxes"].as_subclass(torch.Tensor)  # in the photo's own pixels
    with TestClient(create_app("raccoon-fcn8s-det-lite0")) as c:  # the file's recommended threshold (0.4)
        assert _ready(c)["task"] == "detection"
        body = c.post("/v1/predict", files={"image": ("r.jpg", photo, "image/jpeg")}).json()
        assert "mask_png" not in body and body["box_classes"] == ["raccoon"]
        best = body["detections"][0]  # run at the trained scale (longer side 320), boxes mapped back
        assert best["name"] == "raccoon"
        iou = box_iou(torch.tensor([best["box"]]), truth).max().item()
        assert iou > 0.5, (best, truth.tolist())
        r = c.post("/v1/predict?format=png", content=photo, headers={"content-type": "image/jpeg"})
        assert r.status_code == 400 and "no segmentation output" in r.json()["error"]
        # per request: conf=0 gives every box down to the floor (the page's slider filters them)
        assert _ready(c)["conf"] == 0.4
        everything = c.post("/v1/predict?conf=0", content=photo, headers={"content-type": "image/jpeg"}).json()
        strict = c.post("/v1/predict?conf=0.9", content=photo, headers={"content-type": "image/jpeg"}).json()
        scores = [d["score"] for d in everything["detections"]]
        assert min(scores) >= 0.05 and [d for d in everything["detections"] if d["score"] >= 0.9] == strict["detections"]
        for bad in ("2", "nan", "x", "0.01"):
            r = c.post(f"/v1/predict?conf={bad}", content=photo, headers={"content-type": "image/jpeg"})
            assert r.status_code == 400 and "conf must be a score" in r.json()["error"]
        over = c.post("/v1/predict?format=overlay", content=photo, headers={"content-type": "image/jpeg"})
        assert over.status_code == 200 and over.headers["content-type"] == "image/jpeg"


# --- WebSocket streams (issue 27.4) ---------------------------------------------------------

def test_a_stream_answers_each_frame_with_its_mask(tmp_path, model_file) -> None:
    frames = [scene(40, 56, seed=i) for i in range(3)]
    with TestClient(create_app(model_file)) as c:
        _ready(c)
        direct = Predictor(model_file, progress=False)
        with c.websocket_connect("/v1/stream") as ws:
            for i, frame in enumerate(frames):
                ws.send_bytes(_png(frame))
                body = ws.receive_json()  # one at a time: nothing is dropped
                assert body["frame"] == i and body["dropped"] == 0 and (body["width"], body["height"]) == (56, 40)
                mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["mask_png"]))))
                assert np.array_equal(mask, direct.predict(frame).mask)
            ws.send_bytes(b"not an image")
            assert "frame 3" in ws.receive_json()["error"]  # a bad frame is answered, the stream goes on
            ws.send_bytes(_png(frames[0]))
            assert ws.receive_json()["frame"] == 4


def test_a_stream_keeps_the_newest_frame_when_frames_come_faster(model_file) -> None:
    gate = threading.Event()
    with TestClient(create_app(model_file)) as c:
        _ready(c)
        batcher = c.app.app.app.state.serve.batcher  # hold the model: frames pile up meanwhile
        run = batcher.run
        batcher.run = lambda images, **kw: (gate.wait(10), run(images, **kw))[1]
        with c.websocket_connect("/v1/stream") as ws:
            for i in range(6):
                ws.send_bytes(_png(scene(32, 32, seed=i)))
            time.sleep(0.5)
            gate.set()
            seen = [ws.receive_json() for _ in range(2)]
        # the first frame was taken at once; of the next five only the newest was kept
        assert [b["frame"] for b in seen] == [0, 5] and seen[1]["dropped"] == 4


def test_stream_limits_and_options_are_checked(model_file) -> None:
    with TestClient(create_app(model_file, ServeSettings(max_streams=1))) as c:
        _ready(c)
        with c.websocket_connect("/v1/stream?smooth=1.5") as ws:
            assert "momentum must be in [0, 1)" in ws.receive_json()["error"]
        with c.websocket_connect("/v1/stream?smooth=0.5&flow=true") as first:
            first.send_bytes(_png(scene(32, 32)))
            assert "mask_png" in first.receive_json()  # smoothing on (along the flow): still a mask per frame
            first.send_bytes(_png(scene(32, 32)))
            assert "mask_png" in first.receive_json()
            with c.websocket_connect("/v1/stream") as second:
                assert "server busy" in second.receive_json()["error"]


def test_a_labels_export_serves_masks_and_refuses_steady_masks(tmp_path, model_file) -> None:
    """A file exported with the argmax inside (``--output labels``) answers /v1/predict and
    /v1/stream with the masks the logits file gives; the temporal filter, which needs class
    scores, is refused when the stream opens, with the reason."""
    pytest.importorskip("onnxruntime")
    from fcnkit.export.onnx_export import export_onnx
    from fcnkit.models.saved import load_model

    labels_file = tmp_path / "colour.labels.onnx"
    export_onnx(load_model(model_file), labels_file, sizes=((64, 96), (45, 77)), output="labels")
    frame = scene(40, 56, seed=1)
    expected = Predictor(model_file, progress=False).predict(frame).mask
    with TestClient(create_app(labels_file)) as c:
        _ready(c)
        body = c.post("/v1/predict", content=_png(frame), headers={"content-type": "image/png"}).json()
        assert np.mean(np.asarray(Image.open(io.BytesIO(base64.b64decode(body["mask_png"])))) == expected) > 0.999
        with c.websocket_connect("/v1/stream") as ws:
            ws.send_bytes(_png(frame))
            mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(ws.receive_json()["mask_png"]))))
            assert mask.shape == expected.shape and np.mean(mask == expected) > 0.999
        with c.websocket_connect("/v1/stream?smooth=0.5") as ws:
            error = ws.receive_json()["error"]
            assert "exported with --output labels" in error and "steady masks" in error
