"""Server assembly: onnxplain's services and the Open Inference Protocol, health, reflection, auth, TLS,
limits, metrics, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from onnxplain.explainers.blas import one_blas_thread
from onnxplain.explainers.errors import FailedPrecondition
from onnxplain.explainers.model import available_providers
from onnxplain.v1 import explanation_service_pb2 as ex_pb2
from onnxplain.v1 import model_service_pb2 as model_pb2

from .handlers import add_service
from .limits import ServerLimits, grpc_options
from .metrics import Metrics
from .observe import ObservingInterceptor
from .oip import SERVICE as OIP_SERVICE
from .oip import InferenceServicer
from .repository import ModelRepository, State
from .security import BearerTokenInterceptor, OpenStreamBudget
from .services import ExplanationServicer, ModelServicer
from .workers import Loader, WorkPool

log = logging.getLogger("onnxplain.server")
SERVICE_NAMES = (
    ex_pb2.DESCRIPTOR.services_by_name["ExplanationService"].full_name,
    model_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
)
LIVENESS = "liveness"
"""Health service name that is SERVING while the process runs (a liveness probe); "" and the service
names are readiness: SERVING only while some model is READY and the server is not draining."""
MODEL_HEALTH_PREFIX = "model/"
"""Per-model readiness: health service ``model/<name>`` is SERVING while that model is READY."""


@dataclass(frozen=True, kw_only=True)
class TlsFiles:
    """PEM files; with ``client_ca`` the server requires client certificates (mutual TLS)."""

    cert: Path
    key: Path
    client_ca: Path | None = None


class OnnxplainServer:
    """A running server. ``port`` is the bound port (useful with port 0 in tests); ``metrics_port`` the
    bound port of the HTTP metrics endpoint, or None when it is off."""

    def __init__(self, server: grpc.aio.Server, port: int, repository: ModelRepository, pool: WorkPool,
                 loader: Loader, health_servicer: health.aio.HealthServicer, limits: ServerLimits, metrics: Metrics):
        self.server, self.port, self.repository, self.pool, self.loader = server, port, repository, pool, loader
        self.health, self.limits, self.metrics = health_servicer, limits, metrics
        self.metrics_port: int | None = None
        self.draining = False
        self._health_names: set[str] = set()

    async def refresh_health(self) -> None:
        """Readiness from the models' states: overall SERVING iff a model is READY and we are not draining."""
        serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
        ready, names = set(), set()
        for entry in self.repository.entries():
            is_ready = entry.state is State.READY and not self.draining
            ready |= {entry.name} if is_ready else set()
            names.add(entry.name)
            await self.health.set(MODEL_HEALTH_PREFIX + entry.name, serving if is_ready else not_serving)
        for gone in self._health_names - names:  # unloaded uploads leave the repository
            await self.health.set(MODEL_HEALTH_PREFIX + gone, not_serving)
        self._health_names = names
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, serving if ready else not_serving)

    async def load_all(self) -> None:
        """Load every repository model; failures are recorded on the model, never raised."""
        for name in self.repository.names():
            try:
                await self.loader.run(self.repository.load, name)
                log.info("model %s ready", name)
            except Exception as exc:
                log.warning("model %s failed to load: %s", name, exc)
        await self.refresh_health()

    async def stop(self, grace: float | None = None, *, drain: float = 0.0) -> None:
        """Drain, then stop: readiness turns NOT_SERVING at once and queued work is refused (UNAVAILABLE),
        health keeps answering for ``drain`` seconds so load balancers see it, running work may finish
        within ``grace`` seconds of the call, then every RPC still open is cancelled."""
        started = time.monotonic()
        grace = self.limits.grace_seconds if grace is None else grace
        self.draining = True
        refused = self.pool.drain()
        self.loader.draining = True
        await self.refresh_health()
        log.info("draining: %d queued requests refused, %d running", refused, self.pool.admitted)
        await asyncio.sleep(drain)
        while self.pool.admitted and time.monotonic() - started < grace:
            await asyncio.sleep(0.05)
        await self.health.set(LIVENESS, health_pb2.HealthCheckResponse.NOT_SERVING)
        # a result already computed is still on its way out: gRPC refuses new calls and lets those finish
        await self.server.stop(max(0.0, grace - (time.monotonic() - started)))
        self.pool.shutdown()
        self.loader.shutdown()
        self.metrics.close()


async def create_server(
    models: Path | None,
    *,
    address: str = "127.0.0.1:0",
    limits: ServerLimits | None = None,
    threads: int = 0,
    providers: list[str] | None = None,
    token: str | None = None,
    admin_token: str | None = None,
    tls: TlsFiles | None = None,
    load: bool = True,
    metrics_address: tuple[str, int] | None = None,
    warm_up: tuple[str, ...] = (),
) -> OnnxplainServer:
    """Build, bind and start a server; with ``load`` every repository model is loaded first (and explains a
    probe image with each ``warm_up`` method before it is READY: :mod:`.warm_up`).

    Returns once the server is accepting; readiness reports SERVING once a model is READY.
    ``metrics_address`` (host, port; port 0 = any free one) serves Prometheus metrics over HTTP.

    Raises:
        OSError: the address is in use or cannot be bound. FailedPrecondition: ``providers`` names an
            execution provider this onnxruntime build lacks (e.g. CUDA on a CPU-only install).
    """
    limits = limits or ServerLimits()
    if admin_token and not token:
        raise ValueError("an admin token needs a token as well: without one, nothing is authenticated")
    check_providers(providers)
    repository = ModelRepository(models, providers=providers, threads=threads, allow_uploads=limits.allow_uploads,
                                 max_tensor_bytes=limits.max_tensor_bytes, warm_up=warm_up)
    pool = WorkPool(max_concurrent=limits.max_concurrent, max_queue=limits.max_queue)
    loader = Loader(max_pending=limits.max_pending_loads)
    metrics = Metrics(pool, repository)
    streams = OpenStreamBudget()
    # observing first (outermost), so RPCs the stream budget or the token check refuse are counted and logged too
    interceptors = [ObservingInterceptor(metrics), streams,
                    *([BearerTokenInterceptor(token, admin_token)] if token else [])]
    server = grpc.aio.server(
        interceptors=interceptors, options=grpc_options(limits), maximum_concurrent_rpcs=limits.max_concurrent_rpcs
    )
    models_servicer = ModelServicer(repository, pool, loader, limits)
    inference = InferenceServicer(repository, pool, limits)
    health_servicer = _add_services(server, ExplanationServicer(repository, pool, limits), models_servicer, inference)
    port = _bind(server, address, tls)
    app = OnnxplainServer(server, port, repository, pool, loader, health_servicer, limits, metrics)
    app.streams = streams
    models_servicer.health_changed = app.refresh_health
    inference._server_ready = lambda: not app.draining
    if metrics_address is not None:
        app.metrics_port = metrics.serve(*metrics_address)
        log.info("metrics at http://%s:%d/metrics", metrics_address[0], app.metrics_port)
    await health_servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
    await app.refresh_health()
    await server.start()
    if load:
        await app.load_all()
    return app


def _add_services(server: grpc.aio.Server, explanations: ExplanationServicer, models: ModelServicer,
                  inference: InferenceServicer) -> health.aio.HealthServicer:
    """onnxplain's services and the OIP one (checked before their handlers run), health, reflection."""
    add_service(server, explanations, ex_pb2.DESCRIPTOR.services_by_name["ExplanationService"])
    add_service(server, models, model_pb2.DESCRIPTOR.services_by_name["ModelService"])
    add_service(server, inference, OIP_SERVICE)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, OIP_SERVICE.full_name, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    return health_servicer


def _bind(server: grpc.aio.Server, address: str, tls: TlsFiles | None) -> int:
    """Bind ``address`` (TLS when ``tls``); the port bound. Raises OSError when the address is taken."""
    try:
        if tls is None:
            port = server.add_insecure_port(address)
        else:
            credentials = grpc.ssl_server_credentials(
                [(tls.key.read_bytes(), tls.cert.read_bytes())],
                root_certificates=tls.client_ca.read_bytes() if tls.client_ca else None,
                require_client_auth=tls.client_ca is not None,
            )
            port = server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        raise OSError(f"cannot bind {address}: address already in use or not available") from exc
    if port == 0:
        raise OSError(f"cannot bind {address}: address already in use or not available")
    return port


def check_providers(providers: list[str] | None) -> None:
    """Fail loudly when asked for an execution provider this onnxruntime build lacks."""
    missing = [p for p in providers or () if p not in available_providers()]
    if missing:
        raise FailedPrecondition(f"execution provider {', '.join(missing)} is not available in this onnxruntime "
                                 f"build (available: {', '.join(available_providers())}); on a CUDA host install "
                                 "'onnxplain[gpu]', or use --providers cpu")


async def serve_forever(models: Path | None, **kwargs) -> None:
    """Run until SIGINT/SIGTERM, then drain gracefully. numpy's BLAS keeps one thread meanwhile:
    onnxruntime owns the cores, and only the main thread can set it for the workers (explainers/blas.py)."""
    with one_blas_thread():
        await _serve(models, **kwargs)


async def _serve(models: Path | None, **kwargs) -> None:
    app = await create_server(models, **kwargs)
    ready = [e.name for e in app.repository.entries() if e.state is State.READY]
    failed = {e.name: e.error for e in app.repository.entries() if e.state is State.FAILED}
    log.info("onnxplain listening on port %d; models ready: %s", app.port, ", ".join(ready) or "none")
    for name, error in failed.items():
        log.warning("model %s is FAILED: %s", name, error)
    print(f"onnxplain serving on port {app.port} (models ready: {', '.join(ready) or 'none'})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("draining (%.0f s drain window, grace %.0f s)", app.limits.drain_seconds, app.limits.grace_seconds)
    await app.stop(drain=app.limits.drain_seconds)
    if app.loader.pending or app.pool.admitted:  # a model load cannot be interrupted: do not wait for it
        log.warning("exiting with %d loads and %d requests still running", app.loader.pending, app.pool.admitted)
        logging.shutdown()
        os._exit(0)
