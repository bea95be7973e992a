"""One pool of compiled onnxruntime sessions, keyed by graph :class:`~.variants.Variant`, bounded in bytes.

Requests choose variants by their parameters (a RISE grid, an extremal ``mask_step``, a CAM layer),
so an unbounded cache grows with every distinct value. The pool keeps the most recently used
sessions within ``max_bytes`` (``ModelConfig.max_cache_bytes``) and evicts the least recently used beyond it.

**What a session weighs.** onnxruntime does not report a session's memory, so the pool estimates
it as the serialized size of the graph it compiled (``ModelProto.ByteSize()``: initializers +
structure, computed without walking the weights' bytes: :func:`~explainers.graph.skeleton.serialized_bytes`;
onnxruntime keeps its own copy of the weights). Prepacked weights and the arena
onnxruntime allocates for activations on the first run are not counted, so the estimate is a lower
bound: for the bundled EfficientNet-Lite0 each RISE-grid variant is estimated at 18 MiB and grows
the process by ~70 MiB (a sweep of 12 grids: +860 MiB unbounded; flat at ~+280 MiB with a 64 MiB
bound). Set the bound with that ratio in mind.

**Eviction is safe.** An evicted session is only dropped from the pool: a loop that is running it
holds a reference, so it stays alive until that request ends, and the next request rebuilds it.
``pinned`` variants (the plain model) are never evicted. The newest entry is kept even when it
alone exceeds ``max_bytes`` (else a large graph would be rebuilt on every request).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, replace

import onnx
import onnxruntime as ort

from ..autodiff import GradientModel
from ..graph.skeleton import serialized_bytes
from .variants import Variant


@dataclass(frozen=True)
class Compiled:
    """A compiled variant: its ``session``, for a gradient graph the names of its extra inputs and
    outputs (``gradient``; its ``model`` proto is dropped once compiled), and its estimated bytes."""

    session: ort.InferenceSession
    gradient: GradientModel | None
    nbytes: int


@dataclass(frozen=True)
class PoolStats:
    """The pool now: bytes and entries held, and counts since it was made."""

    nbytes: int
    entries: int
    builds: int
    evictions: int


class SessionPool:
    """Compiled sessions by variant: built once, least recently used evicted beyond ``max_bytes``.

    Args:
        build: ``build(variant)`` → (graph, gradient names or None); may raise (nothing is kept).
        open_session: compiles a graph (raises InvalidModel when onnxruntime refuses it).
        max_bytes: the bound on the estimated bytes held (see the module docstring).
        pinned: variants never evicted.

    Thread-safe, with one lock: two threads asking for the same variant wait for one build.
    """

    def __init__(self, build: Callable[[Variant], tuple[onnx.ModelProto, GradientModel | None]],
                 open_session: Callable[[onnx.ModelProto], ort.InferenceSession], *, max_bytes: int,
                 pinned: Iterable[Variant] = ()):
        self._build = build
        self._open_session = open_session
        self.max_bytes = max_bytes
        self._pinned = frozenset(pinned)
        self._lock = threading.Lock()
        self._entries: OrderedDict[Variant, Compiled] = OrderedDict()  # least recently used first
        self._building: dict[Variant, Future[Compiled]] = {}
        self._builds = 0
        self._evictions = 0

    def get(self, variant: Variant) -> Compiled:
        """The compiled ``variant``, built now if the pool does not hold it.

        Raises:
            whatever building or compiling it raises (GradientError, InvalidModel); the next call retries.
        """
        with self._lock:
            entry = self._entries.get(variant)
            if entry is not None:
                self._entries.move_to_end(variant)
                return entry
            pending = self._building.get(variant)
            owner = pending is None
            if owner:
                pending = self._building[variant] = Future()
        if not owner:
            return pending.result()
        try:
            entry = self._compile(variant)
        except BaseException as exc:
            with self._lock:
                del self._building[variant]
            pending.set_exception(exc)
            raise
        with self._lock:
            del self._building[variant]
            self._entries[variant] = entry
            self._builds += 1
            self._evict_beyond_bound(keep=variant)
        pending.set_result(entry)
        return entry

    def _compile(self, variant: Variant) -> Compiled:
        graph, gradient = self._build(variant)
        session = self._open_session(graph)
        if gradient is not None:
            gradient = replace(gradient, model=onnx.ModelProto())  # the session holds the graph
        return Compiled(session, gradient, serialized_bytes(graph))

    def adopt(self, variant: Variant, graph: onnx.ModelProto, session: ort.InferenceSession) -> None:
        """Hold ``session``, already compiled from ``graph`` (not a gradient graph), as ``variant``'s: for the
        pool's owner before it shares the pool (a concurrent :meth:`get` of ``variant`` would compile its own)."""
        with self._lock:
            self._entries[variant] = Compiled(session, None, serialized_bytes(graph))
            self._entries.move_to_end(variant)
            self._builds += 1
            self._evict_beyond_bound(keep=variant)

    def _evict_beyond_bound(self, *, keep: Variant) -> None:
        held = sum(entry.nbytes for entry in self._entries.values())
        for variant in list(self._entries):
            if held <= self.max_bytes:
                return
            if variant == keep or variant in self._pinned:
                continue
            held -= self._entries.pop(variant).nbytes
            self._evictions += 1

    def variants(self) -> list[Variant]:
        """The variants held, least recently used first."""
        with self._lock:
            return list(self._entries)

    def stats(self) -> PoolStats:
        """Bytes and entries held now, and builds and evictions so far."""
        with self._lock:
            return PoolStats(sum(entry.nbytes for entry in self._entries.values()), len(self._entries),
                             self._builds, self._evictions)

