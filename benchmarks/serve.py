"""fcnkit serve under load on loopback, next to the offline Predictor on the same model file.

For each model file: offline throughput (``Predictor.predict_batch`` over the images,
one at a time and in batches of 4) and, against a ``fcnkit serve`` process on
127.0.0.1, throughput and p50/p95/p99 latency at concurrency 1, 4 and 16 (httpx,
keep-alive connections, real CamVid val frames as PNG uploads), failed requests, and
the server's resident memory sampled over a soak at concurrency 16. Bounded: a fixed
number of requests per level and a fixed soak time.

    .venv/bin/python benchmarks/serve.py                       # PyTorch + OpenVINO int8 of camvid-fcn8s-lite0
    .venv/bin/python benchmarks/serve.py --soak 120 --requests 200

Writes benchmarks/results/serve.md (and .json). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from fcnkit.inference import Predictor
from fcnkit.serve.process import spawn_server

ROOT = Path(__file__).resolve().parents[1]
CAMVID = ROOT.parent / "shared" / "data" / "camvid"


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def offline(model: str, arrays: list[np.ndarray], threads: int) -> dict[str, float]:
    import torch

    torch.set_num_threads(threads)
    predictor = Predictor(model, progress=False)
    predictor.predict_batch(arrays[:2])  # warm-up (OpenVINO compiles on first call)
    out = {}
    for batch in (1, 4):
        t = time.perf_counter()
        for i in range(0, len(arrays), batch):
            predictor.predict_batch(arrays[i:i + batch])
        out[f"batch{batch}"] = len(arrays) / (time.perf_counter() - t)
    return out


async def load(base: str, bodies: list[bytes], concurrency: int, total: int) -> dict[str, float]:
    latencies: list[float] = []
    failures = 0
    next_index = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal failures, next_index
        while next_index < total:
            body = bodies[next_index % len(bodies)]
            next_index += 1
            t = time.perf_counter()
            try:
                r = await client.post(f"{base}/v1/predict", content=body, headers={"content-type": "image/png"})
                ok = r.status_code == 200
            except httpx.TransportError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t)
            else:
                failures += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    q = np.percentile(latencies, [50, 95, 99]) * 1000 if latencies else [float("nan")] * 3
    return {"concurrency": concurrency, "requests": total, "failed": failures, "images_per_s": len(latencies) / wall,
            "p50_ms": float(q[0]), "p95_ms": float(q[1]), "p99_ms": float(q[2])}


async def soak(base: str, bodies: list[bytes], pid: int, seconds: float) -> dict[str, float]:
    samples, stop = [], time.perf_counter() + seconds
    done = failed = 0

    async def worker(client):
        nonlocal done, failed
        k = 0
        while time.perf_counter() < stop:
            try:
                r = await client.post(f"{base}/v1/predict", content=bodies[k % len(bodies)],
                                      headers={"content-type": "image/png"})
                done += r.status_code == 200
                failed += r.status_code != 200
            except httpx.TransportError:
                failed += 1
            k += 1

    async def sampler():
        while time.perf_counter() < stop:
            samples.append(_rss_mb(pid))
            await asyncio.sleep(5)

    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=16)) as client:
        await asyncio.gather(sampler(), *(worker(client) for _ in range(16)))
    return {"seconds": seconds, "requests": done, "failed": failed, "rss_first_mb": samples[0],
            "rss_last_mb": samples[-1], "rss_max_mb": max(samples), "rss_samples": len(samples)}


def serve_and_measure(model: str, bodies: list[bytes], args) -> dict:
    base, proc = spawn_server(model, "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms),
                              "--max-queue", "256", timeout=300)
    try:
        asyncio.run(load(base, bodies, 2, 8))  # warm-up
        levels = [asyncio.run(load(base, bodies, c, args.requests)) for c in (1, 4, 16)]
        soaked = asyncio.run(soak(base, bodies, proc.pid, args.soak))
    finally:
        proc.terminate()
        proc.wait(60)
    return {"levels": levels, "soak": soaked, "exit_code": proc.returncode}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="camvid-fcn8s-lite0")
    p.add_argument("--int8", default=None, help="OpenVINO int8 .xml of the model (default: made with fcnkit optimize)")
    p.add_argument("--images", type=int, default=24, help="CamVid val frames used")
    p.add_argument("--requests", type=int, default=96, help="requests per concurrency level")
    p.add_argument("--soak", type=float, default=120.0, help="seconds at concurrency 16 for the memory check")
    p.add_argument("--max-batch", type=int, default=4)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve.md")
    args = p.parse_args()
    frames = sorted((CAMVID / "val").glob("*.png"))[: args.images]
    arrays = [np.asarray(Image.open(f).convert("RGB")) for f in frames]
    bodies = []
    for a in arrays:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        bodies.append(buf.getvalue())
    work = tempfile.TemporaryDirectory()
    int8 = args.int8
    if int8 is None:
        int8 = str(Path(work.name) / "int8.xml")
        subprocess.run([sys.executable, "-m", "fcnkit", "optimize", args.model, "--backend", "openvino", "--precision",
                        "int8", "--val", f"camvid:{CAMVID}", "--calib", f"camvid:{CAMVID}", "--limit", "8",
                        "--calib-limit", "16", "--max-drop", "2", "--out", int8], check=True)
    results = {}
    for name, model in (("PyTorch fp32", args.model), ("OpenVINO int8", int8)):
        print(f"== {name}: {model}", flush=True)
        off = offline(model, arrays, args.threads)
        print(f"offline: {off}", flush=True)
        served = serve_and_measure(model, bodies, args)
        print(json.dumps(served, indent=1), flush=True)
        results[name] = {"offline": off, **served}
    rows = ["| model | offline img/s (batch 1 / 4) | concurrency | img/s | vs offline batch 1 | p50 ms | p95 ms | "
            "p99 ms | failed |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        for lv in r["levels"]:
            rows.append(f"| {name} | {r['offline']['batch1']:.1f} / {r['offline']['batch4']:.1f} | {lv['concurrency']} | "
                        f"{lv['images_per_s']:.1f} | {lv['images_per_s'] / r['offline']['batch1']:.2f}x | "
                        f"{lv['p50_ms']:.0f} | {lv['p95_ms']:.0f} | {lv['p99_ms']:.0f} | {lv['failed']} |")
    soak_rows = ["| model | soak s | requests | failed | RSS first / last / max MB | exit code |",
                 "| --- | --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        s = r["soak"]
        soak_rows.append(f"| {name} | {s['seconds']:.0f} | {s['requests']} | {s['failed']} | {s['rss_first_mb']:.0f} / "
                         f"{s['rss_last_mb']:.0f} / {s['rss_max_mb']:.0f} | {r['exit_code']} |")
    text = ("# fcnkit serve on loopback\n\n"
            f"`benchmarks/serve.py`: {args.model}, {len(frames)} CamVid val frames (360x480 PNG uploads), "
            f"--max-batch {args.max_batch}, --max-wait-ms {args.max_wait_ms:g}, {args.requests} requests per level, "
            f"2 CPU cores shared by server and client.\n\n" + "\n".join(rows) + "\n\n" + "\n".join(soak_rows) + "\n")
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(text)


if __name__ == "__main__":
    main()
