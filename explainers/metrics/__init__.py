"""The metrics room: is an explanation trustworthy?

Each metric is registered by name (:mod:`.registry`) with typed parameters, the direction in which
it is better, its paper and its cost; it evaluates a :class:`~.subject.Subject` (a method's
explanation and the means to recompute it) and returns a :class:`~.result.MetricResult`. The front
door is :func:`explainers.evaluate.evaluate`. Metrics that need retraining (ROAR) are not per request:
:data:`~.registry.NOT_PER_REQUEST` says why.
"""

from . import pointing, removal, road, robustness  # noqa: F401  (register the metrics)
from .registry import NOT_PER_REQUEST, MetricParams, MetricSpec, PlanInput, get_metric, list_metrics, register_metric
from .result import Curve, MetricResult, area_under_curve
from .subject import Subject

__all__ = [
    "NOT_PER_REQUEST",
    "Curve",
    "MetricParams",
    "MetricResult",
    "MetricSpec",
    "PlanInput",
    "Subject",
    "area_under_curve",
    "get_metric",
    "list_metrics",
    "register_metric",
]
