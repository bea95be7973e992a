"""Bounded model work for an asyncio server.

Blocking library work runs on a fixed pool of worker threads so the event loop (and the health
service) stays responsive. Admission is bounded: ``max_concurrent`` running plus ``max_queue``
waiting; beyond that a request is refused at once with RESOURCE_EXHAUSTED. A stream's slot is
freed when its final item (the result) is handed over, before it is on the wire, so a strictly
sequential client never finds its own previous request still holding the slot; a cancelled stream
frees it as soon as the method stops between batches. When the server drains, work still queued is
refused at once with UNAVAILABLE and no new work is admitted.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from onnxplain.explainers import RunContext
from onnxplain.explainers.errors import DeadlineExceeded, ResourceExhausted, Unavailable

T = TypeVar("T")
_END = object()
DRAINING = "the server is shutting down; retry on another replica"


class WorkPool:
    def __init__(self, *, max_concurrent: int, max_queue: int):
        self.max_concurrent = max_concurrent
        self.limit = max_concurrent + max_queue
        self._executor = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="explain")
        self._admitted = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._queued: set[Future] = set()
        self.draining = False

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
        """Requests admitted but not yet started on a worker."""
        with self._lock:
            return len(self._queued)

    def _admit(self) -> None:
        with self._lock:
            if self.draining:
                raise Unavailable(DRAINING)
            if self._admitted >= self.limit:
                raise ResourceExhausted(
                    f"server busy: {self._admitted} requests running or queued (limit {self.limit}); retry later",
                    retryable=True,
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
            future = self._submit(lambda: fn(*args))
        except BaseException:
            self._release()
            raise
        # the slot is held until the work really ends (a caller that leaves does not stop a running thread)
        future.add_done_callback(lambda _: self._release())
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if future.cancelled() and self.draining:
                raise Unavailable(DRAINING) from None
            raise

    def _submit(self, fn: Callable[[], Any]) -> Future:
        """Submit ``fn``; until it starts it counts as queued (and :meth:`drain` may cancel it)."""
        handle: dict[str, Any] = {}  # set under the lock once submit() has returned the future

        def run() -> Any:
            with self._lock:
                handle["started"] = True
                if "future" in handle:
                    self._queued.discard(handle["future"])
            return fn()

        future = self._executor.submit(run)
        with self._lock:
            handle["future"] = future
            if "started" not in handle:
                self._queued.add(future)
        future.add_done_callback(self._forget)  # cancelled while queued (its caller left): no longer queued
        return future

    def _forget(self, future: Future) -> None:
        with self._lock:
            self._queued.discard(future)

    def drain(self) -> int:
        """Stop admitting work and refuse what is still queued; returns how many were refused."""
        with self._lock:
            self.draining = True
            queued, self._queued = list(self._queued), set()
        return sum(future.cancel() for future in queued)

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
        released = threading.Event()

        def release_once() -> None:
            if not released.is_set():
                released.set()
                self._release()

        def work() -> None:
            try:
                for item in job():
                    if is_final(item):
                        release_once()  # before the result reaches the client (see the module docstring)
                    loop.call_soon_threadsafe(channel.put, item)
                    if context.cancelled:
                        break
            except BaseException as exc:  # delivered to the consumer, which raises it
                loop.call_soon_threadsafe(channel.put, exc)
            finally:
                loop.call_soon_threadsafe(channel.put, _END)
                release_once()

        def refused(future: Future) -> None:  # cancelled by drain() before it started
            if future.cancelled():
                loop.call_soon_threadsafe(channel.put, Unavailable(DRAINING))
                loop.call_soon_threadsafe(channel.put, _END)
                release_once()

        try:
            self._submit(work).add_done_callback(refused)
        except RuntimeError:
            release_once()
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


FINAL_EVENTS = frozenset({"result", "done"})
"""The last event of a stream: Explain's result, Evaluate's done."""


def is_final(item: Any) -> bool:
    """Whether an item is a stream's last (an Explain result, an Evaluate done)."""
    return getattr(item, "WhichOneof", None) is not None and item.WhichOneof("event") in FINAL_EVENTS


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


class Loader:
    """Model loads on a thread of their own, so a slow or abandoned load never holds an explanation's slot.

    At most ``max_pending`` loads are running or waiting (beyond: RESOURCE_EXHAUSTED). A load whose
    caller goes away, or that outlives its time limit, is *abandoned*: the thread cannot be
    interrupted inside onnx/onnxruntime, but the repository asks ``abandoned()`` before swapping the
    new version in, so nothing half-wanted becomes READY.
    """

    def __init__(self, *, max_pending: int = 2):
        self.max_pending = max_pending
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load")
        self._pending = 0
        self._lock = threading.Lock()
        self.draining = False

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    async def run(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """``fn(*args, abandoned=…)`` on the load thread, within ``timeout`` seconds (None: no limit)."""
        with self._lock:
            if self.draining:
                raise Unavailable(DRAINING)
            if self._pending >= self.max_pending:
                raise ResourceExhausted(f"{self._pending} model loads are running or waiting (limit "
                                        f"{self.max_pending}); retry later", retryable=True)
            self._pending += 1
        abandoned = threading.Event()
        future = self._executor.submit(lambda: fn(*args, abandoned=abandoned.is_set))
        future.add_done_callback(lambda _: self._done())
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout)
        except TimeoutError:
            abandoned.set()
            raise DeadlineExceeded(f"loading took longer than {timeout:.0f} s and was abandoned; nothing was "
                                   "swapped in (raise --load-timeout-seconds for very large models)") from None
        except asyncio.CancelledError:
            abandoned.set()
            raise

    def _done(self) -> None:
        with self._lock:
            self._pending -= 1

    def shutdown(self) -> None:
        self.draining = True
        self._executor.shutdown(wait=False, cancel_futures=True)
