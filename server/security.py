"""Who may call what: bearer tokens, and a budget for the streams anyone may hold open.

- **Tokens.** With a token, every RPC but health needs ``authorization: Bearer <token>`` (compared in
  constant time). With an admin token as well, LoadModel and UnloadModel need the admin token and the
  explain token is refused for them (PERMISSION_DENIED): the right to explain is not the right to
  change what is served. Reflection is behind the token: it is a long-lived stream, and a server that
  asks for a token has no anonymous callers to describe itself to. Health stays open (probes carry no
  credentials).
- **Open streams.** Health ``Watch`` and reflection streams can be held open by anyone who may call
  them. gRPC's ``maximum_concurrent_rpcs`` is one budget for every RPC, so 256 idle Watch streams
  used to lock everyone out. They get their own budget: at most ``per_peer`` per client address and
  ``total`` in all; beyond it RESOURCE_EXHAUSTED at once. Health ``Check`` is never limited here.
"""

from __future__ import annotations

import hmac
import inspect
import os
from collections import Counter
from pathlib import Path

import grpc

from onnxplain.explainers.errors import PermissionDenied, ResourceExhausted, Unauthenticated

from .errors import to_status

HEALTH = "/grpc.health.v1.Health/"
REFLECTION = "/grpc.reflection."
ADMIN_METHODS = ("/onnxplain.v1.ModelService/LoadModel", "/onnxplain.v1.ModelService/UnloadModel")
HELD_OPEN = ("/grpc.health.v1.Health/Watch", REFLECTION)


def read_secret(value: str | None, file: str | None, env: str) -> str | None:
    """A secret from a flag value, else a file (first line), else the environment variable ``env``."""
    if value:
        return value
    if file:
        lines = Path(file).read_text().splitlines()
        secret = lines[0].strip() if lines else ""
        if not secret:
            raise ValueError(f"{file} is empty")
        return secret
    return os.environ.get(env) or None


def _denied(handler: grpc.RpcMethodHandler, status: grpc.Status) -> grpc.RpcMethodHandler:
    async def deny(request, context):
        await context.abort_with_status(status)

    async def deny_stream(request, context):
        await context.abort_with_status(status)
        yield  # pragma: no cover (an async generator that aborts first)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny_stream)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny_stream)
    return grpc.unary_unary_rpc_method_handler(deny)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Requires the token on every RPC except health; the admin token (when set) on Load/UnloadModel."""

    def __init__(self, token: str, admin_token: str | None = None):
        self._token = f"Bearer {token}".encode()
        self._admin = f"Bearer {admin_token}".encode() if admin_token else None

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or details.method.startswith(HEALTH):
            return handler
        given = dict(details.invocation_metadata or ()).get("authorization", "")
        given = given.encode() if isinstance(given, str) else given
        admin_only = self._admin is not None and details.method in ADMIN_METHODS
        if hmac.compare_digest(given, self._admin if admin_only else self._token):
            return handler
        if admin_only and hmac.compare_digest(given, self._token):
            error = PermissionDenied(f"{details.method.rsplit('/', 1)[-1]} needs the admin token")
        else:
            error = Unauthenticated("missing or wrong bearer token in the 'authorization' metadata")
        return _denied(handler, to_status(error))


class OpenStreamBudget(grpc.aio.ServerInterceptor):
    """Caps health Watch and reflection streams per client address and in all (see the module docstring)."""

    def __init__(self, *, per_peer: int = 4, total: int = 32):
        self.per_peer, self.total = per_peer, total
        self._open: Counter[str] = Counter()

    @property
    def open(self) -> int:
        return sum(self._open.values())

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or not details.method.startswith(HELD_OPEN) or not handler.response_streaming:
            return handler
        inner = handler.stream_stream or handler.unary_stream
        budget = self

        async def admit(context) -> str:
            peer = context.peer().rsplit(":", 1)[0]
            if budget._open[peer] >= budget.per_peer or budget.open >= budget.total:
                error = ResourceExhausted(f"too many open health/reflection streams ({budget._open[peer]} from "
                                          f"this address, {budget.open} in all; limits {budget.per_peer} and "
                                          f"{budget.total}); use Check, or close a stream")
                await context.abort_with_status(to_status(error))
            budget._open[peer] += 1
            return peer

        def leave(peer: str) -> None:
            budget._open[peer] -= 1
            if budget._open[peer] <= 0:
                del budget._open[peer]

        if inspect.isasyncgenfunction(inner):  # yields its responses
            async def counted(request, context):
                peer = await admit(context)
                try:
                    async for response in inner(request, context):
                        yield response
                finally:
                    leave(peer)
        else:  # writes its responses with context.write (grpc's own health servicer)
            async def counted(request, context):
                peer = await admit(context)
                try:
                    return await inner(request, context)
                finally:
                    leave(peer)

        make = grpc.stream_stream_rpc_method_handler if handler.request_streaming else grpc.unary_stream_rpc_method_handler
        return make(counted, request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)
