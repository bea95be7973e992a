"""Metrics that rewrite the model's graph need the graph: a check shared by them."""

from __future__ import annotations

from ..errors import FailedPrecondition
from ..model import OnnxClassifier
from ..model.remote import RemoteClassifier


def require_local_graph(classifier: OnnxClassifier, rewrite: str) -> None:
    """Raise :class:`FailedPrecondition` when ``classifier`` is served remotely (its graph here is a
    stand-in, so ``rewrite`` — what the metric does to the graph — cannot be done)."""
    if isinstance(classifier, RemoteClassifier):
        raise FailedPrecondition(f"model {classifier.name!r} is served remotely: {rewrite} needs its ONNX graph here")
