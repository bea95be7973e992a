"""Every RPC observed in one place: its final status code and latency go to the metrics, and each
onnxplain RPC (Explain, Predict, ListModels, …) writes exactly one completion line to the
``onnxplain.server.requests`` log.

:class:`ObservingInterceptor` wraps the handler of every RPC the server implements — health and
reflection included — whatever its shape (unary or streaming, coroutine or async generator). The
final status is known only when the handler returns, its response stream ends, or it raises:

=========================================  ======================================================
how the handler ends                        code recorded
=========================================  ======================================================
returns / its stream ends                   the code it set (``context.set_code``), else ``OK``
aborts (``context.abort``, ``abort()``)     the code it aborted with
cancelled (client gone, or stream closed)   ``DEADLINE_EXCEEDED`` if the deadline has passed,
                                            else ``CANCELLED`` — but ``OK`` once an Explain stream
                                            has sent its result: clients hang up as soon as they
                                            have it, often before the closing status is sent
raises anything else                        ``UNKNOWN`` (what gRPC sends the client)
=========================================  ======================================================

Model evaluations are counted by the servicer, which knows them, through :func:`count_evaluations`;
the interceptor attributes them to the request's model and method when the RPC ends.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from contextlib import aclosing
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import grpc

from onnxplain.v1 import explanation_service_pb2 as ex_pb2

from .logs import client_text
from .metrics import Metrics

access_log = logging.getLogger("onnxplain.server.requests")
LOGGED_PREFIX = "onnxplain.v1."  # RPCs that write a completion line (health probes would drown them)

_HANDLER_KINDS = {  # (request_streaming, response_streaming) → the handler's behaviour and its factory
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}


@dataclass(kw_only=True)
class Call:
    """One RPC in progress: what the request named, and the model evaluations it ran."""

    rpc: str  # full method name without the leading slash
    started: float = field(default_factory=time.perf_counter)
    request_id: str = ""
    model: str = ""
    method: str = ""
    forward: int = 0
    backward: int = 0

    @property
    def short_name(self) -> str:
        return self.rpc.rsplit("/", 1)[-1]


def request_fields(request: Any) -> dict[str, str]:
    """The request's ``request_id``, ``model`` and ``method``, where it has them, cut to loggable length."""
    explained = getattr(request, "explanation", request)  # Evaluate: model and method are the explanation's
    fields = {"request_id": getattr(request, "request_id", ""), "model": getattr(explained, "model", ""),
              "method": getattr(explained, "method", "")}
    return {key: client_text(str(value or "")) for key, value in fields.items()}


_current: ContextVar[Call | None] = ContextVar("onnxplain_call", default=None)


def count_evaluations(forward: int = 0, backward: int = 0) -> None:
    """Add model evaluations to the RPC being handled (call on the event loop, in the handler's task).

    A no-op outside an observed RPC, so servicers work unchanged without the interceptor.
    """
    call = _current.get()
    if call is not None:
        call.forward += forward
        call.backward += backward


class ObservingInterceptor(grpc.aio.ServerInterceptor):
    """Records every implemented RPC's final code and latency in ``metrics``, and logs its completion."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None:  # unimplemented: gRPC answers UNIMPLEMENTED; client-chosen names stay unlabelled
            return None
        attribute, factory = _HANDLER_KINDS[(handler.request_streaming, handler.response_streaming)]
        observed = self._observed(getattr(handler, attribute), details.method)
        return factory(observed, request_deserializer=handler.request_deserializer,
                       response_serializer=handler.response_serializer)

    def _observed(self, behaviour, method: str):
        rpc = method.lstrip("/")
        if inspect.isasyncgenfunction(behaviour):

            async def streamed(request, context):
                call = _begin(rpc, request)
                code, delivered = grpc.StatusCode.UNKNOWN, False
                try:
                    async with aclosing(behaviour(request, context)) as responses:
                        async for response in responses:
                            delivered = _is_result(response)
                            yield response
                    code = context.code() or grpc.StatusCode.OK
                except BaseException as exc:  # GeneratorExit too: the stream was closed early
                    code = grpc.StatusCode.OK if delivered and _is_cancellation(exc) else _code_of(exc, context)
                    raise
                finally:
                    self._finish(call, code)

            return streamed

        async def awaited(request, context):
            call = _begin(rpc, request)
            code = grpc.StatusCode.UNKNOWN
            try:
                response = await behaviour(request, context)
                code = context.code() or grpc.StatusCode.OK
                return response
            except BaseException as exc:
                code = _code_of(exc, context)
                raise
            finally:
                self._finish(call, code)

        return awaited

    def _finish(self, call: Call, code: grpc.StatusCode) -> None:
        seconds = time.perf_counter() - call.started
        self.metrics.observe(call.rpc, code.name, seconds)
        self.metrics.count_evaluations(call.model, call.method or call.short_name, call.forward, call.backward)
        if call.rpc.startswith(LOGGED_PREFIX):
            log_completion(call, code, seconds)


def _begin(rpc: str, request: Any) -> Call:
    call = Call(rpc=rpc, **request_fields(request))
    _current.set(call)  # each RPC runs in its own task, hence its own context: nothing to reset
    return call


def _is_result(response: Any) -> bool:
    return (isinstance(response, ex_pb2.ExplainResponse) and response.HasField("result")) or (
        isinstance(response, ex_pb2.EvaluateResponse) and response.HasField("done"))


def _is_cancellation(exc: BaseException) -> bool:
    return isinstance(exc, (asyncio.CancelledError, GeneratorExit))


def _code_of(exc: BaseException, context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    if _is_cancellation(exc):
        remaining = context.time_remaining()
        return grpc.StatusCode.DEADLINE_EXCEEDED if remaining is not None and remaining <= 0 else grpc.StatusCode.CANCELLED
    return context.code() or grpc.StatusCode.UNKNOWN  # an abort has set its code before raising


def log_completion(call: Call, code: grpc.StatusCode, seconds: float) -> None:
    """The one line that says how an RPC ended: ``rpc``, ``request_id``, ``model``, ``method``, ``status``
    (the code's name), ``latency_ms``, ``forward_evaluations``, ``backward_evaluations``."""
    fields = {
        "rpc": call.short_name, "request_id": call.request_id, "model": call.model, "method": call.method,
        "status": code.name, "latency_ms": round(seconds * 1000, 3),
        "forward_evaluations": call.forward, "backward_evaluations": call.backward,
    }
    access_log.info("%s %s in %.1f ms", call.short_name, code.name, seconds * 1000, extra={"fields": fields})
