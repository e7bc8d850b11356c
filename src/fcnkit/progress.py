"""Progress of long loops: a bar on a terminal, a plain line now and then everywhere else.

``progress_bar`` is the one way fcnkit shows progress. On a terminal (or in a Jupyter
notebook) it is a tqdm bar, redrawn in place. In a file, a pipe or a CI log -- where
every ``\\r`` redraw would pile up on one line -- it prints a line every ``interval``
seconds (10, or ``$FCNKIT_PROGRESS_INTERVAL``) and one when done::

    eval: 40/101 img (40%), 3.2 img/s, ETA 19 s

``enabled=False`` shows nothing; ``lines=False`` shows a bar on a terminal and nothing
elsewhere (for a caller that logs its own lines, as the trainer does). Either object
has tqdm's ``update``, ``set_postfix``, ``close``, ``disable``, iteration and ``with``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

LINE_INTERVAL = 10.0  # seconds between plain progress lines


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is an interactive terminal (where redrawing a bar works)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def _in_notebook() -> bool:
    ipython = sys.modules.get("IPython")
    try:
        return ipython is not None and "IPKernelApp" in ipython.get_ipython().config
    except Exception:  # noqa: BLE001 -- not in IPython, or an IPython without a kernel
        return False


def progress_bar(iterable: Iterable | None = None, *, total: float | None = None, desc: str = "", unit: str = "it",
                 enabled: bool = True, lines: bool = True, leave: bool = True, initial: float = 0,
                 unit_scale: bool = False, unit_divisor: int = 1000, file: IO[str] | None = None,
                 interval: float | None = None) -> Any:
    """A progress display for ``total`` steps (or the items of ``iterable``) on ``file``
    (default stderr): a tqdm bar on a terminal, else ``LineProgress`` (or nothing, with
    ``lines=False``). ``leave=False``: a transient bar, and no final line off a terminal
    unless a periodic one was printed. ``unit_scale``: counts as 1.2k / 3.4M (bytes with
    ``unit="B"``), divided by ``unit_divisor``."""
    if total is None and iterable is not None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:  # no length (a generator, an iterable-style DataLoader): count without a total
            pass
    stream = file if file is not None else sys.stderr
    if enabled and (is_terminal(stream) or (_in_notebook() and stream in (sys.stderr, sys.stdout))):
        from tqdm.auto import tqdm  # a widget in notebooks, the text bar on terminals

        return tqdm(iterable, total=total, desc=desc or None, unit=unit, leave=leave, initial=initial,
                    unit_scale=unit_scale, unit_divisor=unit_divisor, file=stream, dynamic_ncols=True)
    if not (enabled and lines):
        return Silent(iterable, total=total, initial=initial)
    if interval is None:
        interval = float(os.environ.get("FCNKIT_PROGRESS_INTERVAL", LINE_INTERVAL))
    return LineProgress(iterable, total=total, desc=desc, unit=unit, leave=leave, initial=initial,
                        unit_scale=unit_scale, unit_divisor=unit_divisor, file=stream, interval=interval)


class Silent:
    """Counts and shows nothing (``disable`` is True, as for a disabled tqdm bar)."""

    disable = True

    def __init__(self, iterable: Iterable | None = None, *, total: float | None = None, initial: float = 0) -> None:
        self.iterable, self.total, self.n = iterable, total, initial

    def __iter__(self) -> Iterator:
        for item in self.iterable:  # type: ignore[union-attr]
            yield item
            self.n += 1

    def __enter__(self) -> Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


class LineProgress(Silent):
    """Plain, append-only progress lines: count/total, percent, rate, ETA (and the
    ``set_postfix`` values), at most one per ``interval`` seconds, and a final one on close."""

    disable = False

    def __init__(self, iterable: Iterable | None = None, *, total: float | None = None, desc: str = "",
                 unit: str = "it", leave: bool = True, initial: float = 0, unit_scale: bool = False,
                 unit_divisor: int = 1000, file: IO[str] | None = None, interval: float = LINE_INTERVAL) -> None:
        super().__init__(iterable, total=total, initial=initial)
        self.desc, self.unit, self.leave, self.interval = desc, unit, leave, interval
        self.unit_scale, self.unit_divisor = unit_scale, unit_divisor
        self.file = file if file is not None else sys.stderr
        self.postfix = ""
        self.start = self.last = time.monotonic()
        self.initial, self.printed, self.closed = initial, 0, False

    def __iter__(self) -> Iterator:
        for item in self.iterable:  # type: ignore[union-attr]
            yield item
            self.update(1)
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._print(self.line(now))

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k} {v}" for k, v in items.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.n > self.initial and (self.leave or self.printed):
            self._print(self.line(time.monotonic(), final=True))

    def _count(self, x: float, rate: bool = False) -> str:
        if self.unit_scale:  # 1.20MB
            from tqdm import tqdm

            return tqdm.format_sizeof(x, suffix=self.unit, divisor=self.unit_divisor)
        if rate and x < 100:
            return f"{x:.3g}"
        return f"{x:,.0f}" if rate or float(x).is_integer() else f"{x:,.1f}"

    def line(self, now: float, *, final: bool = False) -> str:
        """``desc: n/total unit (p%), rate unit/s, ETA t`` (``done in t`` when final)."""
        elapsed = max(now - self.start, 1e-9)
        rate = (self.n - self.initial) / elapsed
        head = f"{self.desc}: " if self.desc else ""
        unit = "" if self.unit_scale else f" {self.unit}"
        count = f"{self._count(self.n)}/{self._count(self.total)}" if self.total else self._count(self.n)
        parts = [f"{head}{count}{unit}" + (f" ({100 * self.n / self.total:.0f}%)" if self.total else ""),
                 f"{self._count(rate, rate=True)}{unit}/s"]
        if final:
            parts.append(f"done in {format_duration(elapsed)}")
        elif self.total and rate > 0:
            parts.append(f"ETA {format_duration((self.total - self.n) / rate)}")
        if self.postfix:
            parts.append(self.postfix)
        return ", ".join(parts)

    def _print(self, text: str) -> None:
        self.printed += 1
        print(text, file=self.file, flush=True)


def format_duration(seconds: float) -> str:
    """12 s, 3.5 min, 1.2 h."""
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


__all__ = ["LINE_INTERVAL", "LineProgress", "Silent", "format_duration", "is_terminal", "progress_bar"]
