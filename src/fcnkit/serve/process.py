"""``fcnkit serve`` as a child process on a free loopback port: for load tests and benchmarks."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_server(model: str | Path, *options: str, timeout: float = 120.0) -> tuple[str, subprocess.Popen]:
    """Start ``fcnkit serve MODEL OPTIONS`` and return (base URL, process) once /healthz is 200.
    RuntimeError with the server's output if it exits or is not healthy within ``timeout``."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fcnkit", "serve", str(model), "--port", str(port), *options],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1) as r:
                if r.status == 200:
                    return base, proc
        except (urllib.error.URLError, OSError):
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"fcnkit serve exited with {proc.returncode}:\n{proc.stdout.read()}")
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"fcnkit serve {model} was not healthy after {timeout:.0f} s:\n{proc.stdout.read()}")


__all__ = ["free_port", "spawn_server"]
