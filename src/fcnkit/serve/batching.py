"""Dynamic micro-batching: concurrent requests of one image size share a forward pass.

Requests wait in one bounded queue. A single worker thread (inference runs off the
event loop, and one model on a few cores is fastest one batch at a time) takes the
oldest request, gathers up to ``max_batch - 1`` more of the same size that arrive
within ``max_wait_ms``, and runs them together. A full queue is refused at once
(the server answers 503 with Retry-After), so a burst never grows memory without
bound. ``close()`` stops taking requests and finishes those already queued.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class QueueFull(RuntimeError):
    """The queue holds ``max_queue`` requests; try again later."""


class Closed(RuntimeError):
    """The batcher is shutting down and takes no new requests."""


@dataclass
class Job:
    image: np.ndarray  # (H, W, 3) uint8
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[:2]


@dataclass(frozen=True)
class Timing:
    queue_ms: float  # waiting for a batch to start
    inference_ms: float  # the batch's forward pass and postprocessing
    batch_size: int


class MicroBatcher:
    """``await batcher.submit(image)`` -> ``(result, Timing)``; ``run(images)`` computes a batch.

    ``on_batch(size, seconds)`` is called after every batch (for metrics).
    """

    def __init__(self, run: Callable[[Sequence[np.ndarray]], list[Any]], *, max_batch: int = 4,
                 max_wait_ms: float = 5.0, max_queue: int = 64,
                 on_batch: Callable[[int, float], None] | None = None) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and max_queue must be >= 1 and max_wait_ms >= 0")
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait_ms / 1000
        self.max_queue, self.on_batch = max_queue, on_batch
        self._jobs: deque[Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="fcnkit-batcher", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Requests waiting (not yet in a running batch)."""
        return len(self._jobs)

    async def submit(self, image: np.ndarray) -> tuple[Any, Timing]:
        loop = asyncio.get_running_loop()
        job = Job(image, loop, loop.create_future())
        with self._cond:
            if self._closed:
                raise Closed("the server is shutting down")
            if len(self._jobs) >= self.max_queue:
                raise QueueFull(f"{len(self._jobs)} requests are queued (--max-queue {self.max_queue})")
            self._jobs.append(job)
            self._cond.notify()
        return await job.future

    def close(self, timeout: float | None = None) -> None:
        """Take no new requests; return once every queued one is answered."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    # --- the worker thread ----------------------------------------------------------
    def _next_batch(self) -> list[Job] | None:
        with self._cond:
            while not self._jobs:
                if self._closed:
                    return None
                self._cond.wait()
            first = self._jobs.popleft()
            batch = [first]
            deadline = first.queued_at + self.max_wait
            while len(batch) < self.max_batch:
                same = next((j for j in self._jobs if j.size == first.size), None)
                if same is not None:
                    self._jobs.remove(same)
                    batch.append(same)
                    continue
                left = deadline - time.perf_counter()
                if left <= 0 or self._closed:
                    break
                self._cond.wait(left)
            return batch

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            start = time.perf_counter()
            try:
                results = self.run([j.image for j in batch])
                error = None
            except Exception as e:  # noqa: BLE001 - every waiting request gets the error, the worker goes on
                results, error = [None] * len(batch), e
            seconds = time.perf_counter() - start
            if self.on_batch is not None:
                self.on_batch(len(batch), seconds)
            for job, result in zip(batch, results):
                timing = Timing(1000 * (start - job.queued_at), 1000 * seconds, len(batch))
                job.loop.call_soon_threadsafe(_settle, job.future, result, timing, error)


def _settle(future: asyncio.Future, result: Any, timing: Timing, error: Exception | None) -> None:
    if future.cancelled():  # the client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result((result, timing))


__all__ = ["Closed", "MicroBatcher", "QueueFull", "Timing"]
