"""Bounded model work for an asyncio server.

Blocking library work runs on a fixed pool of worker threads so the event loop (and the health
service) stays responsive. Admission is bounded: ``max_concurrent`` running plus ``max_queue``
waiting; beyond that a request is refused at once with RESOURCE_EXHAUSTED. A slot is held until
the worker thread has really finished, so a cancelled stream frees it as soon as the method stops
between batches.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from onnxplain.explainers import RunContext
from onnxplain.explainers.errors import ResourceExhausted

T = TypeVar("T")
_END = object()


class WorkPool:
    def __init__(self, *, max_concurrent: int, max_queue: int):
        self.max_concurrent = max_concurrent
        self.limit = max_concurrent + max_queue
        self._executor = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="explain")
        self._admitted = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    @property
    def admitted(self) -> int:
        """Requests running or queued right now."""
        with self._lock:
            return self._admitted

    @property
    def running(self) -> int:
        """Requests on a worker thread now (the pool runs whatever is admitted, up to its size)."""
        return min(self.admitted, self.max_concurrent)

    @property
    def queued(self) -> int:
        """Requests admitted and waiting for a worker thread."""
        return max(self.admitted - self.max_concurrent, 0)

    def _admit(self) -> None:
        with self._lock:
            if self._admitted >= self.limit:
                raise ResourceExhausted(
                    f"server busy: {self._admitted} requests running or queued (limit {self.limit}); retry later"
                )
            self._admitted += 1

    def _release(self) -> None:
        with self._lock:
            self._admitted -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is admitted (for graceful shutdown); False on timeout."""
        with self._lock:
            return self._idle.wait_for(lambda: self._admitted == 0, timeout)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking call on the pool (admitted like any request)."""
        self._admit()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self._release()

    async def stream(self, job: Callable[[], Iterator[T]], context: RunContext) -> AsyncIterator[T]:
        """Run generator ``job`` on a worker and yield its items on the event loop.

        Items travel through a channel that keeps order but never lets a slow reader make the
        worker buffer without bound: consecutive items marked ``coalesce`` by :func:`is_progress`
        replace each other. When the consumer stops early (client cancelled, deadline), the
        context is cancelled and the worker stops between batches.
        """
        self._admit()
        loop = asyncio.get_running_loop()
        channel = _Channel()

        def work() -> None:
            try:
                for item in job():
                    loop.call_soon_threadsafe(channel.put, item)
                    if context.cancelled:
                        break
            except BaseException as exc:  # delivered to the consumer, which raises it
                loop.call_soon_threadsafe(channel.put, exc)
            finally:
                loop.call_soon_threadsafe(channel.put, _END)
                self._release()

        try:
            self._executor.submit(work)
        except RuntimeError:
            self._release()
            raise
        try:
            while True:
                item = await channel.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            context.cancel("the client went away or its deadline passed")

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def is_progress(item: Any) -> bool:
    """Whether an item may be replaced by a newer one of its kind while the reader lags."""
    return getattr(item, "WhichOneof", None) is not None and item.WhichOneof("event") == "progress"


class _Channel:
    """Event-loop-only queue; a pending progress item is replaced by a newer one."""

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._ready = asyncio.Event()

    def put(self, item: Any) -> None:
        if is_progress(item) and self._items and is_progress(self._items[-1]):
            previous = self._items.pop()
            if previous.progress.HasField("partial_heatmaps") and not item.progress.HasField("partial_heatmaps"):
                item.progress.partial_heatmaps.CopyFrom(previous.progress.partial_heatmaps)
        self._items.append(item)
        self._ready.set()

    async def get(self) -> Any:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()
