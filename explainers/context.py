"""Per-request run state: cancellation, the evaluation budget and the evaluation counters.

The batched evaluation loop checks :meth:`RunContext.check` between chunks; the server cancels
the context when the client goes away or its deadline passes. Long single runs are interrupted
too: the loop registers a terminator (onnxruntime ``RunOptions.terminate``) while a run is active.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .errors import Cancelled, DeadlineExceeded, ResourceExhausted


class RunContext:
    """Thread-safe cancellation flag plus the forward/backward evaluation counts of one request."""

    def __init__(self, *, max_evaluations: int | None = None):
        self.max_evaluations = max_evaluations
        self.forward = 0
        self.backward = 0
        self.bytes_fed = 0  # bytes sent to onnxruntime per chunk (per-request inputs excluded)
        self._cancelled = threading.Event()
        self._reason = "cancelled by the caller"
        self._error: type[Cancelled] = Cancelled
        self._lock = threading.Lock()
        self._terminators: set[Callable[[], None]] = set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self, reason: str = "cancelled by the caller", *, deadline: bool = False) -> None:
        """Stop the work: between chunks, and the run in flight. ``deadline``: the request's deadline
        passed (the work then ends with :class:`DeadlineExceeded`, else :class:`Cancelled`)."""
        with self._lock:
            if not self._cancelled.is_set():
                self._reason, self._error = reason, DeadlineExceeded if deadline else Cancelled
            self._cancelled.set()
            terminators = list(self._terminators)
        for terminate in terminators:
            terminate()

    def check(self) -> None:
        """Raise :class:`Cancelled` (or :class:`DeadlineExceeded`) if the request was cancelled."""
        if self._cancelled.is_set():
            raise self.stopped()

    def stopped(self, when: str = "") -> Cancelled:
        """The error that ends the work of a cancelled request (``when``: where it stopped)."""
        return self._error(f"{self._reason} {when}".strip())

    def charge(self, forward: int = 0, backward: int = 0) -> None:
        """Count evaluations about to run; raise if they would exceed the budget."""
        if self.max_evaluations is not None:
            total = self.forward + self.backward + forward + backward
            if total > self.max_evaluations:
                raise ResourceExhausted(
                    f"this request needs more than {self.max_evaluations} model evaluations, "
                    "the server's per-request limit"
                )
        self.forward += forward
        self.backward += backward

    def add_terminator(self, terminate: Callable[[], None]) -> None:
        with self._lock:
            if self._cancelled.is_set():
                terminate()
            self._terminators.add(terminate)

    def remove_terminator(self, terminate: Callable[[], None]) -> None:
        with self._lock:
            self._terminators.discard(terminate)
