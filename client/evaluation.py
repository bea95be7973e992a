"""Evaluate on the client side: building the request, typed metric parameters, and the stream's events.

An Evaluate stream is ``EvaluationAccepted``, ``Progress``…, the evaluated explanation (a
:class:`~.client.Result`), one :class:`MetricScore` per metric, then :class:`EvaluationDone`;
:class:`Evaluation` collects them. Metric parameters travel as typed values (``ParameterValue``:
number, integer, text, flag, numbers, tensor); a string from a command line is read by the parameter's
type as ListMetrics declares it (:func:`parameter_value`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from onnxplain.v1 import explanation_service_pb2 as ex_pb2
from onnxplain.v1.wire import from_tensor, to_tensor

from .client import Accepted, Progress, Result, parse_event

MetricsLike = Sequence[str] | Mapping[str, Mapping[str, Any]]
"""Metric names, or {name: {parameter: value}}."""
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class EvaluationAccepted:
    """``accepted.planned_evaluations`` counts the whole evaluation; ``metrics``: {name: effective parameters}."""

    accepted: Accepted
    metrics: dict[str, dict[str, str]]


@dataclass(frozen=True)
class Curve:
    """``x`` [K]; ``y`` float32 [targets, K]; ``x_ticks`` names the x positions (e.g. layers) or is empty."""

    name: str
    x: NDArray[np.float64]
    y: NDArray[np.float32]
    x_label: str
    x_ticks: tuple[str, ...] = ()
    y_label: str = ""


@dataclass(frozen=True)
class MetricScore:
    """One metric's score of the explanation: ``values`` [targets], read by ``higher_is_better``."""

    metric: str
    values: NDArray[np.float64]
    higher_is_better: bool
    curves: tuple[Curve, ...] = ()
    extras: dict[str, float] = field(default_factory=dict)
    forward_evaluations: int = 0
    backward_evaluations: int = 0
    elapsed_seconds: float = 0.0


@dataclass(frozen=True)
class EvaluationDone:
    forward_evaluations: int
    backward_evaluations: int
    elapsed_seconds: float
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Evaluation:
    """A whole Evaluate stream: the explanation and each metric's score, by name, in request order."""

    accepted: EvaluationAccepted
    explanation: Result
    metrics: dict[str, MetricScore]
    done: EvaluationDone


EvaluationEvent = EvaluationAccepted | Progress | Result | MetricScore | EvaluationDone


def parameter_value(value: Any, kind: str | None = None) -> ex_pb2.ParameterValue:
    """A Python value (or a command-line string read as ``kind``: int, float, str, bool, floats, tensor)
    → a typed ParameterValue. Raises ValueError for a string that is not a ``kind``."""
    if isinstance(value, str) and kind not in (None, "str"):
        value = _parse(value, kind)
    if isinstance(value, (bool, np.bool_)):
        return ex_pb2.ParameterValue(flag=bool(value))
    if isinstance(value, (int, np.integer)):
        return ex_pb2.ParameterValue(integer=int(value))
    if isinstance(value, (float, np.floating)):
        return ex_pb2.ParameterValue(number=float(value))
    if isinstance(value, str):
        return ex_pb2.ParameterValue(text=value)
    if isinstance(value, np.ndarray):
        return ex_pb2.ParameterValue(tensor=to_tensor(value))
    return ex_pb2.ParameterValue(numbers=ex_pb2.NumberList(values=[float(v) for v in value]))


def _parse(text: str, kind: str) -> Any:
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "floats":
        return [float(item) for item in text.split(",")]
    if kind == "bool" and text.lower() in TRUE + FALSE:
        return text.lower() in TRUE
    if kind == "tensor":  # a saved numpy array
        return np.load(text)
    raise ValueError(f"{text!r} is not a {kind}")


def parameter_kinds(metrics: Sequence[ex_pb2.MetricInfo]) -> dict[str, dict[str, str]]:
    """{metric: {parameter: type}} from ListMetrics' answer."""
    return {m.name: {p.name: p.type for p in m.parameters} for m in metrics}


def has_text_values(metrics: MetricsLike) -> bool:
    """Whether any parameter value is a string (to be read by its declared type)."""
    return isinstance(metrics, Mapping) and any(isinstance(v, str) for ps in metrics.values() for v in ps.values())


def metric_requests(metrics: MetricsLike, kinds: Mapping[str, Mapping[str, str]] | None = None) -> list[ex_pb2.MetricRequest]:
    """Names, or {name: {parameter: value}} → MetricRequest messages; ``kinds`` {metric: {parameter: type}}
    reads string values by their declared type (from ListMetrics)."""
    items = metrics.items() if isinstance(metrics, Mapping) else ((name, {}) for name in metrics)
    requests = []
    for name, params in items:
        declared = (kinds or {}).get(name, {})
        try:
            values = {key: parameter_value(value, declared.get(key)) for key, value in params.items()}
        except ValueError as exc:
            raise ValueError(f"metric {name!r}: {exc}") from None
        requests.append(ex_pb2.MetricRequest(metric=name, parameters=values))
    return requests


def parse_evaluate_event(response: ex_pb2.EvaluateResponse, accepted: EvaluationAccepted | None) -> EvaluationEvent:
    """One streamed EvaluateResponse → its event (``accepted``: the stream's first event, for the explanation)."""
    kind = response.WhichOneof("event")
    if kind == "accepted":
        first = parse_event(ex_pb2.ExplainResponse(accepted=response.accepted.accepted), None)
        assert isinstance(first, Accepted)
        return EvaluationAccepted(first, {m.metric: dict(m.parameters) for m in response.accepted.metrics})
    if kind == "progress":
        return parse_event(ex_pb2.ExplainResponse(progress=response.progress), None)
    if kind == "explanation":
        return parse_event(ex_pb2.ExplainResponse(result=response.explanation), accepted and accepted.accepted)
    if kind == "metric":
        return metric_score(response.metric)
    if kind != "done":  # a newer server's event, or none: never read as the end of the stream
        raise ValueError(f"unknown Evaluate event {kind!r}; upgrade onnxplain's client")
    done = response.done
    return EvaluationDone(done.forward_evaluations, done.backward_evaluations, done.elapsed_seconds,
                          tuple(done.warnings))


def metric_score(message: ex_pb2.MetricResult) -> MetricScore:
    curves = tuple(Curve(c.name, np.asarray(c.x, np.float64), from_tensor(c.y), c.x_label, tuple(c.x_ticks),
                         c.y_label) for c in message.curves)
    return MetricScore(message.metric, np.asarray(message.values, np.float64), message.higher_is_better, curves,
                       dict(message.extras), message.forward_evaluations, message.backward_evaluations,
                       message.elapsed_seconds)


def collect(events: Any) -> Evaluation:
    """Drain an evaluation's events into an :class:`Evaluation`."""
    accepted = explanation = done = None
    scores: dict[str, MetricScore] = {}
    for event in events:
        if isinstance(event, EvaluationAccepted):
            accepted = event
        elif isinstance(event, Result):
            explanation = event
        elif isinstance(event, MetricScore):
            scores[event.metric] = event
        elif isinstance(event, EvaluationDone):
            done = event
    if accepted is None or explanation is None or done is None:
        raise RuntimeError("the server closed the Evaluate stream before it was done")
    return Evaluation(accepted, explanation, scores, done)
