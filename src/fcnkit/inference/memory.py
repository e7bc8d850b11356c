"""Give freed memory back to the operating system between tiles.

glibc's malloc keeps freed blocks in its heap instead of returning them: blocks
below its (dynamic, up to 32 MB) mmap threshold land in the heap, and a tile's
activations are mostly 5-30 MB each. A long-lived block above them (the carry, the
mask, a tile's pending columns) keeps the heap from shrinking, so without help the
resident set holds the last tile's activations as well as the next one's, and grows
with the number of tiles per row, i.e. with the image's width.
``malloc_trim(0)`` releases the free pages; the price is page faults when the next
tile touches them again. So the predictor trims only once the resident set has grown
by half its memory budget (``HeapGuard``). Measured in one session with
``benchmarks/predict.py`` (MobileNetV3 FCN-8s, 8000^2, 512M budget, 2 threads; peak
working memory / seconds, 64 MB of it the output mask): never trimmed 929 MB / 19.2 s;
trimmed after every tile 481 MB / 29.8 s; guard at the whole budget 644 MB / 23.4 s;
guard at half the budget (the default) 478-513 MB / 27-28 s.
"""

from __future__ import annotations

import ctypes
import functools
import os


@functools.cache
def _glibc(name: str, *argtypes):
    """glibc's function ``name`` (from the C library this process already has loaded), or
    ``None`` on other C libraries (musl, macOS, Windows)."""
    try:
        fn = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError, TypeError):
        return None
    fn.argtypes, fn.restype = list(argtypes), ctypes.c_int
    return fn


def release_freed_memory() -> bool:
    """Return the C heap's free pages to the OS; ``True`` if that was possible here."""
    trim = _glibc("malloc_trim", ctypes.c_size_t)
    if trim is None:
        return False
    trim(0)
    return True


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest: blocks up to this come from the heap, not a fresh mmap
TRIM_THRESHOLD = 2**30  # free space at the heap's top kept for the next pass instead of given back


@functools.cache
def keep_freed_heap() -> bool:
    """Let the C heap keep freed activations for the next forward pass (once per process;
    ``True`` if glibc took the settings).

    By default glibc serves blocks above a moving threshold by ``mmap`` and gives the top of
    the heap back to the OS once more than twice that threshold is free. An eager forward
    pass frees all its activations at the end, so the next pass faults every page in again
    and zero-fills it. Measured with ``benchmarks/profile_eager.py`` (360x480, 2 threads,
    AMD EPYC Zen 3, nets run alternately): the BN-folded CamVid FCN-8s 70 -> 40 ms per
    forward, torchvision's LR-ASPP 40 -> 34 ms. The price is a resident set that stays at
    the peak working memory of the process (up to 1 GiB of free heap is kept); tiled
    prediction still trims when it must (``HeapGuard``). ``FCNKIT_KEEP_HEAP=0`` in the
    environment leaves glibc's defaults alone (e.g. a process embedding fcnkit that frees
    a lot and must give it back)."""
    if os.environ.get("FCNKIT_KEEP_HEAP", "1") == "0":
        return False
    mallopt = _glibc("mallopt", ctypes.c_int, ctypes.c_int)
    if mallopt is None or not mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD):  # first: without it the heap top would still go back
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def resident_bytes() -> int | None:
    """This process's resident set size now (Linux ``/proc``), or ``None`` where unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class HeapGuard:
    """Trim the heap only when the resident set has grown ``allowance`` bytes past where it
    stood at creation: most tiles then reuse the pages the last one freed (no page faults),
    and the retained heap still cannot pile up beyond the allowance."""

    def __init__(self, allowance: int) -> None:
        self.allowance = allowance
        self.start = resident_bytes()
        self.trims = 0

    def __call__(self) -> None:
        now = resident_bytes()
        if now is None or self.start is None or now - self.start > self.allowance:
            self.trims += release_freed_memory()
