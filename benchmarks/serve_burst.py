"""Issue 25.1's attack, measured: 8 concurrent uploads of a 60 KB PNG that decodes to 7900x7900.

Against ``fcnkit serve camvid-fcn8s-lite0 --max-queue 4`` on loopback, twice: with the
defaults (``--max-pixels`` 16 MP: refused before decoding) and with the limit raised to
64 MP, where such an image is admitted (what every upload got before the limit existed),
bounded here by ``--timeout`` so the run ends. Per setting: the answers' status codes,
the time until the last answer, the server's peak resident memory (sampled every 50 ms)
and whether it still answers a normal frame afterwards.

    .venv/bin/python benchmarks/serve_burst.py        # writes benchmarks/results/serve_burst.md
Run it on a quiet machine.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import threading
import time
from pathlib import Path

import httpx
from PIL import Image

from fcnkit.engine.runtime import cpu_model
from serve import _rss_mb  # benchmarks/serve.py (this folder is on the path)
from fcnkit.serve.process import spawn_server

ROOT = Path(__file__).resolve().parents[1]
CAMVID = ROOT.parent / "shared" / "data" / "camvid"


def bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (7900, 7900)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def run(extra: list[str], body: bytes, frame: bytes) -> dict:
    base, proc = spawn_server("camvid-fcn8s-lite0", "--max-queue", "4", *extra)
    peak, stop = [_rss_mb(proc.pid)], threading.Event()
    start_rss = peak[0]

    def sample() -> None:
        while not stop.is_set():
            peak.append(_rss_mb(proc.pid))
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()

    async def burst():
        async with httpx.AsyncClient(timeout=600) as c:
            return await asyncio.gather(*(c.post(f"{base}/v1/predict", content=body,
                                                 headers={"content-type": "image/png"}) for _ in range(8)))

    t0 = time.perf_counter()
    answers = asyncio.run(burst())
    seconds = time.perf_counter() - t0
    after = httpx.post(f"{base}/v1/predict", content=frame, headers={"content-type": "image/png"}, timeout=120)
    stop.set()
    proc.terminate()  # a running batch finishes before SIGTERM's graceful exit: give it 10 s, then kill
    try:
        proc.wait(10)
        ended = "exits on SIGTERM"
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        ended = "still computing 10 s after SIGTERM (killed)"
    codes = sorted(r.status_code for r in answers)
    return {"codes": codes, "seconds": seconds, "rss_start": start_rss, "rss_peak": max(peak),
            "after": after.status_code, "ended": ended}


def main() -> None:
    body = bomb()
    frame = (CAMVID / "val" / "0016E5_07959.png").read_bytes()
    rows = [("defaults (--max-pixels 16 MP)", run([], body, frame)),
            ("--max-pixels 64000000 --timeout 30 (the image admitted)", run(["--max-pixels", "64000000", "--timeout",
                                                                               "30"], body, frame))]
    lines = ["# Serve: a burst of decompression-heavy uploads (issue 25.1)", "",
             f"8 concurrent POSTs of a {len(body) / 1024:.0f} KB grayscale PNG that decodes to 7900x7900 "
             f"(62 MP), `fcnkit serve camvid-fcn8s-lite0 --max-queue 4`; CPU: {cpu_model()}, 2 cores.", "",
             "| setting | answers | time to the last answer | server RSS start / peak MB | a normal frame after | "
             "shutdown |", "|---|---|---|---|---|---|"]
    for name, r in rows:
        answers = ", ".join(f"{r['codes'].count(c)}x {c}" for c in sorted(set(r["codes"])))
        lines.append(f"| {name} | {answers} | {r['seconds']:.1f} s | {r['rss_start']:.0f} / {r['rss_peak']:.0f} | "
                     f"{r['after']} | {r['ended']} |")
    lines += ["", "Before the limit existed every upload up to 64 MP was decoded before the queue was asked, "
              "and work for clients that had left went on: one such request took 81 s of both cores and memory "
              "rose from 0.87 to 2.59 GB; 8 peaked at 6.0 GB (the issue's figures). Reproduce: "
              "`.venv/bin/python benchmarks/serve_burst.py`."]
    text = "\n".join(lines) + "\n"
    print(text)
    (ROOT / "benchmarks" / "results" / "serve_burst.md").write_text(text)


if __name__ == "__main__":
    main()
