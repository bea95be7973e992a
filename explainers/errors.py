"""Exceptions a user can act on.

Every error names what was wrong and what is allowed. The server maps these classes to gRPC
status codes in one table (``server/errors.py``); the library itself knows nothing of gRPC.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_LISTED = 20
"""How many names an error lists before it says how many more there are (error text travels in gRPC
trailers, whose size clients cap at 8 KiB)."""
MAX_ECHO = 80
"""How many characters of a client-chosen name an error echoes."""


def shorten(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` cut to ``limit`` characters (with '…' and the full length when cut)."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


def listing(names: list[str]) -> str:
    """The first :data:`MAX_LISTED` names, then how many more: "a, b, … and 89 more"."""
    if not names:
        return "none"
    shown = ", ".join(shorten(n) for n in names[:MAX_LISTED])
    return shown if len(names) <= MAX_LISTED else f"{shown}, … and {len(names) - MAX_LISTED} more"


class OnnxplainError(Exception):
    """Base class. ``reason`` is a stable UPPER_SNAKE identifier for machines (google.rpc.ErrorInfo)."""

    reason = "ONNXPLAIN_ERROR"

    def __init__(self, message: str, *, reason: str | None = None):
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self)


class InvalidArgument(OnnxplainError, ValueError):
    """A request field is wrong. ``field`` is the dotted path of the offending field."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, message: str, *, reason: str | None = None):
        super().__init__(f"{field}: {message}", reason=reason)
        self.field = field
        self.description = message


class InvalidModel(InvalidArgument):
    """The bytes are not a usable ONNX classifier (corrupt, not ONNX, unsupported signature)."""

    reason = "INVALID_MODEL"

    def __init__(self, message: str, *, field: str = "model"):
        super().__init__(field, message)


class NotFound(OnnxplainError, LookupError):
    """An unknown model, method or tensor name; the message lists what exists."""

    reason = "NOT_FOUND"

    def __init__(self, kind: str, name: str, available: Iterable[str]):
        names = sorted(available)
        super().__init__(f"unknown {kind} {shorten(name)!r}; available: {listing(names)}")
        self.kind, self.name, self.available = kind, name, names


class FailedPrecondition(OnnxplainError):
    """The request is well formed but the model cannot serve it (e.g. an op without a gradient rule)."""

    reason = "FAILED_PRECONDITION"


class ResourceExhausted(OnnxplainError):
    """Over a configured limit: queue full, too many model evaluations, image too large.

    ``retryable`` says whether the same request may succeed later (a full queue) or never will on this
    server (a limit the request itself exceeds); clients' automatic retries follow it.
    """

    reason = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, retryable: bool = False, reason: str | None = None):
        super().__init__(message, reason=reason)
        self.retryable = retryable


class Unavailable(OnnxplainError):
    """Temporarily unable to serve: model still loading, server draining."""

    reason = "UNAVAILABLE"


class Cancelled(OnnxplainError):
    """The caller cancelled or its deadline passed; work stopped between batches."""

    reason = "CANCELLED"


class DeadlineExceeded(Cancelled):
    """The request's deadline passed; work stopped between batches (or its run was terminated)."""

    reason = "DEADLINE_EXCEEDED"


def check_range(field: str, value: float, low: float | None, high: float | None) -> None:
    """Raise :class:`InvalidArgument` unless ``low <= value <= high`` (``None`` = unbounded)."""
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise InvalidArgument(field, f"{value!r} is out of range; allowed: [{lo}, {hi}]")


class Unauthenticated(OnnxplainError):
    """No or malformed credentials."""

    reason = "UNAUTHENTICATED"


class PermissionDenied(OnnxplainError):
    """Valid credentials, operation not allowed (e.g. uploads disabled)."""

    reason = "PERMISSION_DENIED"


class NonFiniteResult(OnnxplainError):
    """A method produced NaN or infinite values from finite input: a bug (or a model that overflows), never OK."""

    reason = "NON_FINITE_RESULT"
