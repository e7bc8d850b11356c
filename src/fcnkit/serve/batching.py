"""Dynamic micro-batching: concurrent requests of one image size share a forward pass.

Requests wait in one bounded queue. A single worker thread (inference runs off the
event loop, and one model on a few cores is fastest one batch at a time) takes the
oldest request, gathers up to ``max_batch - 1`` more of the same size that arrive
within ``max_wait_ms``, and runs them together. A request first ``reserve()``s its
place, before its upload is read and decoded, so at most ``max_queue`` uploads are in
memory at once and a full queue is refused at once (the server answers 503 with
Retry-After): a burst never grows memory without bound. A request whose client left
(or whose deadline passed) is cancelled and its queued work skipped. ``close()`` stops
taking requests and finishes those already queued.
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
class QueuedRequest:
    image: np.ndarray  # (H, W, 3) uint8
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)
    gone: threading.Event = field(default_factory=threading.Event)  # cancelled: nobody waits for it any more
    options: dict[str, Any] = field(default_factory=dict)  # keywords for ``run`` (e.g. probabilities=True)
    key: tuple = field(init=False)  # jobs share a batch only when their image size and options agree

    def __post_init__(self) -> None:
        self.key = (self.image.shape[:2], tuple(sorted(self.options.items())))


class Ticket:
    """A place in the queue, held from before an upload is read until it is submitted or released."""

    def __init__(self, batcher: "MicroBatcher") -> None:
        self._batcher, self.held = batcher, True

    def release(self) -> None:
        if self.held:
            self.held = False
            with self._batcher._cond:
                self._batcher._reserved -= 1


@dataclass(frozen=True)
class Timing:
    queue_ms: float  # waiting for a batch to start
    inference_ms: float  # the batch's forward pass and postprocessing
    batch_size: int


class MicroBatcher:
    """``await batcher.submit(image)`` -> ``(result, Timing)``; ``run(images, **options)``
    computes a batch (``options``: those given to ``submit``, the same for the whole batch).

    ``on_batch(size, seconds)`` is called after every batch (for metrics).
    """

    def __init__(self, run: Callable[[Sequence[np.ndarray]], list[Any]], *, max_batch: int = 4,
                 max_wait_ms: float = 5.0, max_queue: int = 64,
                 on_batch: Callable[[int, float], None] | None = None) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and max_queue must be >= 1 and max_wait_ms >= 0")
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait_ms / 1000
        self.max_queue, self.on_batch = max_queue, on_batch
        self._jobs: deque[QueuedRequest] = deque()
        self._reserved = 0  # places promised to requests still reading or decoding their upload
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="fcnkit-batcher", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Requests waiting (not yet in a running batch), and those admitted but still decoding."""
        return len(self._jobs) + self._reserved

    def _admit(self) -> None:  # under self._cond
        if self._closed:
            raise Closed("the server is shutting down")
        if len(self._jobs) + self._reserved >= self.max_queue:
            raise QueueFull(f"{len(self._jobs) + self._reserved} requests are queued (--max-queue {self.max_queue})")

    def reserve(self) -> Ticket:
        """A place in the queue for a request that is about to read and decode its upload;
        QueueFull / Closed at once when there is none."""
        with self._cond:
            self._admit()
            self._reserved += 1
        return Ticket(self)

    async def submit(self, image: np.ndarray, ticket: Ticket | None = None, **options: Any) -> tuple[Any, Timing]:
        """Queue ``image`` (in the place ``ticket`` reserved, if given) and wait for its result;
        ``options`` go to ``run`` as keywords. Cancelling the waiting task (the client left, a
        deadline passed) drops the job."""
        loop = asyncio.get_running_loop()
        job = QueuedRequest(image, loop, loop.create_future(), options=options)
        job.future.add_done_callback(lambda f: job.gone.set() if f.cancelled() else None)
        with self._cond:
            if ticket is not None and ticket.held:
                ticket.held = False
                self._reserved -= 1
                if self._closed:
                    raise Closed("the server is shutting down")
            else:
                self._admit()
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
    def _next_batch(self) -> list[QueuedRequest] | None:
        with self._cond:
            while not self._jobs:
                if self._closed:
                    return None
                self._cond.wait()
            first = self._jobs.popleft()
            if first.gone.is_set():
                return []  # its client left while it waited: no work for nobody
            batch = [first]
            deadline = first.queued_at + self.max_wait
            while len(batch) < self.max_batch:
                for job in [j for j in self._jobs if j.gone.is_set()]:
                    self._jobs.remove(job)
                same = next((j for j in self._jobs if j.key == first.key), None)
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
            batch = [j for j in batch if not j.gone.is_set()]
            if not batch:
                continue
            start = time.perf_counter()
            try:
                results = self.run([j.image for j in batch], **batch[0].options)
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


__all__ = ["Closed", "MicroBatcher", "QueueFull", "Ticket", "Timing"]
