"""The one table from library exceptions to gRPC status codes, with rich error details.

Each status carries a ``google.rpc.ErrorInfo`` (reason + domain) and, for bad fields, a
``google.rpc.BadRequest`` field violation, so generated clients in any language can act on it.
"""

from __future__ import annotations

import logging

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from onnxplain.explainers import errors
from onnxplain.v1.wire import TensorError

DOMAIN = "onnxplain.v1"
MAX_MESSAGE_CHARS = 1024
"""Longest status message sent: the message and its details travel in trailers (clients cap them at 8 KiB)."""
MAX_REQUEST_ID_CHARS = 128
NO_RETRY = ("grpc-retry-pushback-ms", "-1")
log = logging.getLogger("onnxplain.server")


def sanitize(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` safe for trailers and log lines: control characters escaped, at most ``limit`` characters."""
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "…"

STATUS_OF: list[tuple[type[Exception], grpc.StatusCode]] = [
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (TensorError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),  # before Cancelled, its base
    (errors.Cancelled, grpc.StatusCode.CANCELLED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.NonFiniteResult, grpc.StatusCode.INTERNAL),  # a bug, said in words instead of returning OK
]


def status_code(exc: BaseException) -> grpc.StatusCode:
    for kind, code in STATUS_OF:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


def to_status(exc: BaseException, *, request_id: str = "") -> grpc.Status:
    """A ``grpc.Status`` for ``exc``; unknown exceptions become INTERNAL and are logged."""
    code = status_code(exc)
    if code is grpc.StatusCode.INTERNAL and not isinstance(exc, errors.OnnxplainError):
        log.error("internal error (request_id=%r)", request_id[:MAX_REQUEST_ID_CHARS], exc_info=exc)
        message = f"internal error ({type(exc).__name__}); this is a bug, please report it with the request_id"
        reason = "INTERNAL"
    else:
        message = sanitize(str(exc))
        reason = getattr(exc, "reason", "INVALID_ARGUMENT")
    request_id = sanitize(request_id, MAX_REQUEST_ID_CHARS)
    details = [error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata={"request_id": request_id})]
    field = getattr(exc, "field", None)
    if field:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=sanitize(field, 200), description=sanitize(getattr(exc, "description", message)))
        details.append(error_details_pb2.BadRequest(field_violations=[violation]))
    packed = []
    for detail in details:
        wrapper = any_pb2.Any()
        wrapper.Pack(detail)
        packed.append(wrapper)
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=packed)
    converted = rpc_status.to_status(status)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and not getattr(exc, "retryable", False):
        # a limit this request itself exceeds: clients' retry policies (gRFC A6) must not try again
        converted = converted._replace(trailing_metadata=(*converted.trailing_metadata, NO_RETRY))
    return converted


async def abort(context: grpc.aio.ServicerContext, exc: BaseException, *, request_id: str = "") -> None:
    """Abort the RPC with the status for ``exc`` (raises, as ``context.abort`` does)."""
    await context.abort_with_status(to_status(exc, request_id=request_id))
