"""Registering servicers so that every RPC is checked before its handler runs.

The generated ``add_*Servicer_to_server`` functions parse requests with ``FromString``: bytes that
are not the request message make gRPC answer UNKNOWN. Here each method of a service descriptor gets
a handler whose parser never raises (:class:`MalformedRequest` instead) and a behaviour that answers
INVALID_ARGUMENT for malformed bytes and for fields protobuf lets through (:mod:`.validate`),
before the servicer sees the request.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError

from onnxplain.explainers.errors import InvalidArgument

from .errors import abort
from .validate import check_request


@dataclass(frozen=True)
class MalformedRequest:
    """What the parser returns for bytes that are not the expected message."""

    message_type: str
    error: str


def _parser(method: MethodDescriptor) -> Callable[[bytes], Any]:
    request_class = message_factory.GetMessageClass(method.input_type)

    def parse(data: bytes) -> Any:
        try:
            return request_class.FromString(data)
        except (DecodeError, RuntimeError, ValueError) as exc:
            return MalformedRequest(method.input_type.full_name, str(exc)[:200])

    return parse


def _rejection(request: Any) -> InvalidArgument | None:
    if isinstance(request, MalformedRequest):
        return InvalidArgument("request", f"the bytes are not a valid {request.message_type} ({request.error})")
    try:
        check_request(request)
    except InvalidArgument as exc:
        return exc
    return None


def _checked(behaviour: Callable) -> Callable:
    if inspect.isasyncgenfunction(behaviour):
        async def streaming(request, context):
            rejected = _rejection(request)
            if rejected is not None:
                await abort(context, rejected)
            async for response in behaviour(request, context):
                yield response

        return streaming

    async def unary(request, context):
        rejected = _rejection(request)
        if rejected is not None:
            await abort(context, rejected, request_id=getattr(request, "request_id", ""))
        return await behaviour(request, context)

    return unary


def add_service(server: grpc.aio.Server, servicer: object, service: ServiceDescriptor) -> None:
    """Register every method of ``service`` implemented by ``servicer``, checked as above."""
    handlers = {}
    for method in service.methods:
        response_class = message_factory.GetMessageClass(method.output_type)
        behaviour = _checked(getattr(servicer, method.name))
        make = grpc.unary_stream_rpc_method_handler if method.server_streaming else grpc.unary_unary_rpc_method_handler
        handlers[method.name] = make(behaviour, request_deserializer=_parser(method),
                                     response_serializer=response_class.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
