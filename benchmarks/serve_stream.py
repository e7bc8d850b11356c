"""The page's live mode, measured from a client: frames over ``/v1/stream``, one in flight.

A ``fcnkit serve MODEL`` process on loopback; a WebSocket client (the ``websockets``
package, as the page's JavaScript would do) sends CamVid val frames as JPEG (480x360,
quality 85) one after another, each as soon as the previous answer came back, for
``--seconds``. Reported: frames per second end to end, round trip median / p95, the
server's resident memory at the start, the end and its maximum (sampled every 0.5 s), and
at each quarter of the run (a leak climbs quarter after quarter; a warm-up settles).

    .venv/bin/python benchmarks/serve_stream.py --model runs/x/model.int8.xml --seconds 120
    .venv/bin/python benchmarks/serve_stream.py --model ... --query 'smooth=0.8&gate=0.2&flow=true'
Writes benchmarks/results/serve_stream.md (a row per run is appended). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import time
from pathlib import Path

from PIL import Image

from fcnkit.engine.runtime import cpu_model
from serve import _rss_mb  # benchmarks/serve.py (this folder is on the path)
from fcnkit.serve.process import spawn_server

ROOT = Path(__file__).resolve().parents[1]
CAMVID = ROOT.parent / "shared" / "data" / "camvid"
OUT = ROOT / "benchmarks" / "results" / "serve_stream.md"


async def stream(url: str, frames: list[bytes], seconds: float, pid: int) -> dict:
    import websockets

    trips, memory, errors = [], [(0.0, _rss_mb(pid))], 0
    async with websockets.connect(url, max_size=2 ** 24) as ws:
        await ws.send(frames[0])  # warm-up: the first answer includes the model's first-call costs
        await ws.recv()
        start = last_sample = time.perf_counter()
        i = 0
        while time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            await ws.send(frames[i % len(frames)])
            body = json.loads(await ws.recv())
            trips.append(time.perf_counter() - t0)
            errors += "error" in body
            i += 1
            if time.perf_counter() - last_sample > 0.5:
                last_sample = time.perf_counter()
                memory.append((last_sample - start, _rss_mb(pid)))
        elapsed = time.perf_counter() - start
    memory.append((elapsed, _rss_mb(pid)))
    rss = [m for _, m in memory]
    quarters = [next(m for t, m in memory if t >= q * elapsed / 4) for q in (1, 2, 3, 4)]
    return {"frames": i, "fps": i / elapsed, "rtt_median_ms": 1000 * statistics.median(trips),
            "rtt_p95_ms": 1000 * sorted(trips)[int(0.95 * (len(trips) - 1))], "errors": errors,
            "rss_start": rss[0], "rss_end": rss[-1], "rss_max": max(rss), "rss_quarters": quarters,
            "seconds": elapsed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="camvid-fcn8s-lite0")
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--query", default="", help="stream options, e.g. smooth=0.8&gate=0.2&flow=true (the page's "
                                                 "'steady masks')")
    args = ap.parse_args()
    frames = []
    for png in sorted((CAMVID / "val").glob("*.png"))[:30]:
        buf = io.BytesIO()
        Image.open(png).convert("RGB").save(buf, format="JPEG", quality=85)
        frames.append(buf.getvalue())
    base, proc = spawn_server(args.model)
    try:
        url = base.replace("http://", "ws://") + "/v1/stream" + (f"?{args.query}" if args.query else "")
        r = asyncio.run(stream(url, frames, args.seconds, proc.pid))
    finally:
        proc.terminate()
        proc.wait(60)
    row = (f"| `{Path(args.model).name}{'?' + args.query if args.query else ''}` | {r['seconds']:.0f} s | {r['frames']} | **{r['fps']:.1f}** | "
           f"{r['rtt_median_ms']:.0f} / {r['rtt_p95_ms']:.0f} | {r['rss_start']:.0f} / {r['rss_end']:.0f} / "
           f"{r['rss_max']:.0f} | {' / '.join(f'{m:.0f}' for m in r['rss_quarters'])} | {r['errors']} | "
           f"{cpu_model()} |")
    if not OUT.exists():
        OUT.write_text("# Live mode: frames over /v1/stream, one in flight (`benchmarks/serve_stream.py`)\n\n"
                       "CamVid val frames as 480x360 JPEG, client and server on the same 2 cores.\n\n"
                       "| model | run | frames | frames/s | round trip median / p95 ms | server RSS start / end / "
                       "max MB | RSS at each quarter MB | errors | CPU |\n|---|---|---|---|---|---|---|---|---|\n")
    lines = OUT.read_text().splitlines()
    last = max(i for i, line in enumerate(lines) if line.startswith("|"))  # the row joins the table, above the notes
    OUT.write_text("\n".join(lines[:last + 1] + [row] + lines[last + 1:]) + "\n")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
