"""Prometheus metrics of one server, and the opt-in HTTP endpoint that exposes them.

Each :class:`Metrics` has its own ``CollectorRegistry`` (never prometheus-client's global one), so
several servers in one process — the tests start many — keep separate counts.

===================================================  ==========  =================================
name                                                 type        meaning
===================================================  ==========  =================================
``onnxplain_requests_total{rpc,code}``               counter     finished RPCs by final status
``onnxplain_request_seconds{rpc}``                   histogram   RPC latency, 1 ms … 10 min
``onnxplain_model_evaluations_total{model,method,    counter     images the model evaluated for
kind}``                                                          requests (kind: forward/backward)
``onnxplain_queue_depth``                            gauge       explanations admitted, waiting
``onnxplain_running``                                gauge       explanations on a worker now
``onnxplain_session_cache_bytes{model}``             gauge       bytes a model's session cache
                                                                 holds (models that report it)
===================================================  ==========  =================================

``rpc`` is the full method name without its leading slash (``onnxplain.v1.ExplanationService/Explain``);
``code`` is the status code's name (``OK``, ``NOT_FOUND``, …); an evaluation's ``method`` is the
explanation method, or the RPC's name where the request names no method (``Predict``). Label values are bounded: RPCs the
server does not implement are never counted, and evaluations are only counted for models and
methods that exist (an unknown name fails before anything is evaluated).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from .repository import ModelRepository
    from .workers import WorkPool

# seconds: a health check (~1 ms) up to the longest explanation a client will wait for (10 min)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0, 120.0, 300.0, 600.0)


class Metrics:
    """The counters of one server; gauges are read from ``pool`` and ``repository`` at each scrape."""

    def __init__(self, pool: WorkPool | None = None, repository: ModelRepository | None = None):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "onnxplain_requests", "Finished RPCs by method and final status code.", ["rpc", "code"],
            registry=self.registry)
        self.latency = Histogram(
            "onnxplain_request_seconds", "RPC latency in seconds, from the handler's start to its final status.",
            ["rpc"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.evaluations = Counter(
            "onnxplain_model_evaluations", "Model evaluations (images) run for requests.", ["model", "method", "kind"],
            registry=self.registry)
        if pool is not None and repository is not None:
            self.registry.register(_LiveGauges(pool, repository))
        self._exporter: tuple[WSGIServer, threading.Thread] | None = None

    def observe(self, rpc: str, code: str, seconds: float) -> None:
        """One finished RPC."""
        self.requests.labels(rpc=rpc, code=code).inc()
        self.latency.labels(rpc=rpc).observe(seconds)

    def count_evaluations(self, model: str, method: str, forward: int, backward: int) -> None:
        for kind, count in (("forward", forward), ("backward", backward)):
            if count > 0:
                self.evaluations.labels(model=model, method=method, kind=kind).inc(count)

    def serve(self, host: str, port: int) -> int:
        """Expose ``/metrics`` over HTTP on ``host:port`` (port 0: any free port); returns the bound port.

        Raises:
            OSError: the address cannot be bound.
        """
        if self._exporter is not None:
            raise RuntimeError("the metrics endpoint is already running")
        self._exporter = start_http_server(port, addr=host, registry=self.registry)
        return self._exporter[0].server_port

    def close(self) -> None:
        """Stop the HTTP endpoint, if running."""
        if self._exporter is not None:
            httpd, thread = self._exporter
            self._exporter = None
            httpd.shutdown()
            httpd.server_close()
            thread.join(5)


class _LiveGauges:
    """Gauges computed at scrape time, so they are never stale and never need updating."""

    def __init__(self, pool: WorkPool, repository: ModelRepository):
        self.pool, self.repository = pool, repository

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("onnxplain_queue_depth", "Explanations admitted and waiting for a worker.",
                                value=self.pool.queued)
        yield GaugeMetricFamily("onnxplain_running", "Explanations running on a worker.", value=self.pool.running)
        cache = GaugeMetricFamily("onnxplain_session_cache_bytes",
                                  "Bytes held by a model's cached inference sessions.", labels=["model"])
        for entry in self.repository.entries():
            size = getattr(entry.classifier, "cache_bytes", None)  # reported by classifiers that pool sessions
            size = size() if callable(size) else size
            if size is not None:
                cache.add_metric([entry.name], float(size))
        yield cache
