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
def _malloc_trim():
    """glibc's ``malloc_trim``, or ``None`` on other C libraries (musl, macOS, Windows)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library this process already has loaded
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_freed_memory() -> bool:
    """Return the C heap's free pages to the OS; ``True`` if that was possible here."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


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
