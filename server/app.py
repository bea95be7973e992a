"""Server assembly: services, health, reflection, auth, TLS, limits, metrics, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from onnxplain.explainers.blas import one_blas_thread
from onnxplain.explainers.errors import Unauthenticated
from onnxplain.v1 import explanation_service_pb2 as ex_pb2
from onnxplain.v1 import explanation_service_pb2_grpc as ex_grpc
from onnxplain.v1 import model_service_pb2 as model_pb2
from onnxplain.v1 import model_service_pb2_grpc as model_grpc

from .errors import to_status
from .limits import ServerLimits, grpc_options
from .metrics import Metrics
from .observe import ObservingInterceptor
from .repository import ModelRepository, State
from .services import ExplanationServicer, ModelServicer
from .workers import WorkPool

log = logging.getLogger("onnxplain.server")
SERVICE_NAMES = (
    ex_pb2.DESCRIPTOR.services_by_name["ExplanationService"].full_name,
    model_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
)
_UNAUTHENTICATED_METHODS = ("/grpc.health.v1.Health/", "/grpc.reflection.")


@dataclass(frozen=True, kw_only=True)
class TlsFiles:
    """PEM files; with ``client_ca`` the server requires client certificates (mutual TLS)."""

    cert: Path
    key: Path
    client_ca: Path | None = None


class _BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Requires ``authorization: Bearer <token>`` on every RPC except health and reflection."""

    def __init__(self, token: str):
        self._expected = f"Bearer {token}"

    async def intercept_service(self, continuation, details):
        if details.method.startswith(_UNAUTHENTICATED_METHODS):
            return await continuation(details)
        metadata = dict(details.invocation_metadata or ())
        if metadata.get("authorization") == self._expected:
            return await continuation(details)
        status = to_status(Unauthenticated("missing or wrong bearer token in the 'authorization' metadata"))

        async def deny(request, context):
            await context.abort_with_status(status)

        handler = await continuation(details)
        if handler is None:
            return None
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(deny)
        return grpc.unary_unary_rpc_method_handler(deny)


class OnnxplainServer:
    """A running server. ``port`` is the bound port (useful with port 0 in tests); ``metrics_port`` the
    bound port of the HTTP metrics endpoint, or None when it is off."""

    def __init__(self, server: grpc.aio.Server, port: int, repository: ModelRepository, pool: WorkPool,
                 health_servicer: health.aio.HealthServicer, limits: ServerLimits, metrics: Metrics):
        self.server, self.port, self.repository, self.pool = server, port, repository, pool
        self.health, self.limits, self.metrics = health_servicer, limits, metrics
        self.metrics_port: int | None = None

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)

    async def load_all(self) -> None:
        """Load every repository model; failures are recorded on the model, never raised."""
        for name in self.repository.names():
            try:
                await self.pool.call(self.repository.load, name)
                log.info("model %s ready", name)
            except Exception as exc:
                log.warning("model %s failed to load: %s", name, exc)

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, report NOT_SERVING, let running work finish within ``grace`` seconds."""
        await self.set_serving(False)
        await self.server.stop(self.limits.grace_seconds if grace is None else grace)
        self.pool.shutdown()
        self.metrics.close()


async def create_server(
    models: Path | None,
    *,
    address: str = "127.0.0.1:0",
    limits: ServerLimits | None = None,
    threads: int = 0,
    providers: list[str] | None = None,
    token: str | None = None,
    tls: TlsFiles | None = None,
    load: bool = True,
    metrics_address: tuple[str, int] | None = None,
) -> OnnxplainServer:
    """Build, bind and start a server; with ``load`` every repository model is loaded first.

    Returns once the server is accepting; health reports SERVING once loading has finished.
    ``metrics_address`` (host, port; port 0 = any free one) serves Prometheus metrics over HTTP.
    """
    limits = limits or ServerLimits()
    repository = ModelRepository(models, providers=providers, threads=threads, allow_uploads=limits.allow_uploads)
    pool = WorkPool(max_concurrent=limits.max_concurrent, max_queue=limits.max_queue)
    metrics = Metrics(pool, repository)
    # observing first (outermost), so RPCs the token check refuses are counted and logged too
    interceptors = [ObservingInterceptor(metrics), *([_BearerTokenInterceptor(token)] if token else [])]
    server = grpc.aio.server(
        interceptors=interceptors, options=grpc_options(limits), maximum_concurrent_rpcs=limits.max_concurrent_rpcs
    )
    ex_grpc.add_ExplanationServiceServicer_to_server(ExplanationServicer(repository, pool, limits), server)
    model_grpc.add_ModelServiceServicer_to_server(ModelServicer(repository, pool, limits), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    if tls is None:
        port = server.add_insecure_port(address)
    else:
        credentials = grpc.ssl_server_credentials(
            [(tls.key.read_bytes(), tls.cert.read_bytes())],
            root_certificates=tls.client_ca.read_bytes() if tls.client_ca else None,
            require_client_auth=tls.client_ca is not None,
        )
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"cannot bind {address}")
    app = OnnxplainServer(server, port, repository, pool, health_servicer, limits, metrics)
    if metrics_address is not None:
        app.metrics_port = metrics.serve(*metrics_address)
        log.info("metrics at http://%s:%d/metrics", metrics_address[0], app.metrics_port)
    await app.set_serving(False)
    await server.start()
    if load:
        await app.load_all()
    await app.set_serving(True)
    return app


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
    log.info("draining (grace %.0f s)", app.limits.grace_seconds)
    await app.stop()
