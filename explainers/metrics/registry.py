"""The metric registry: ``@register_metric("name", ...)`` on a metric's generator.

A metric is a generator function::

    evaluate(subject: Subject, params: <its MetricParams>, *, rng: numpy.random.Generator)
        -> Iterator[Planned | Progress | MetricResult]

yielding one :class:`~explainers.events.Planned` (its own passes), any
:class:`~explainers.events.Progress`, and exactly one :class:`~.result.MetricResult` last. Its
``plan(params, PlanInput)`` returns the same :class:`Planned` *before* anything runs, so the front
door (:func:`explainers.evaluate.evaluate`) can announce the whole request's cost up front.

Metrics that cannot be computed per request are not registered; :data:`NOT_PER_REQUEST` says why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..errors import NotFound
from ..events import Planned, Progress
from ..model import OnnxClassifier
from ..objectives import Objective
from ..params import MethodParams
from .result import MetricResult

NOT_PER_REQUEST: dict[str, str] = {
    "roar": "needs retraining the model on data with the top-ranked pixels removed, once per method and "
            "fraction (Hooker et al. 2019, A Benchmark for Interpretability Methods in Deep Neural Networks, "
            "NeurIPS): not a per-request metric",
}
"""Metrics users ask for that are not computed per request, and why."""


@dataclass(frozen=True, kw_only=True)
class MetricParams(MethodParams):
    """Base of every metric's parameter dataclass (same ``param()`` machinery as methods)."""

    field_prefix: ClassVar[str] = "metric_params"


@dataclass(frozen=True)
class PlanInput:
    """What a metric's ``plan`` may read before anything runs: the model, the image shape
    (C, H, W), the objective, the method and ``method_planned``, one run of the method's own
    :class:`Planned` (what a re-explanation costs)."""

    classifier: OnnxClassifier
    shape: tuple[int, int, int]
    objective: Objective
    method: str
    method_params: MethodParams
    method_planned: Planned


MetricFn = Callable[..., Iterator[Planned | Progress | MetricResult]]
PlanFn = Callable[[MetricParams, PlanInput], Planned]


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric: contract name, parameter type, generator, how to read its value,
    the paper it implements, whether it re-runs the method (``reexplains``) and its cost ``plan``."""

    name: str
    params: type[MetricParams]
    evaluate: MetricFn
    higher_is_better: bool
    citation: str
    reexplains: bool
    plan: PlanFn

    @property
    def summary(self) -> str:
        """The first line of the metric's docstring."""
        doc = (self.evaluate.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


_REGISTRY: dict[str, MetricSpec] = {}


def register_metric(name: str, *, params: type[MetricParams], higher_is_better: bool, citation: str,
                    reexplains: bool, plan: PlanFn) -> Callable[[MetricFn], MetricFn]:
    """Register ``evaluate`` under ``name``; raises ``ValueError`` on a duplicate or a ROAR-like name."""

    def decorate(evaluate: MetricFn) -> MetricFn:
        if name in _REGISTRY:
            raise ValueError(f"metric {name!r} is already registered by {_REGISTRY[name].evaluate.__module__}")
        if name in NOT_PER_REQUEST:
            raise ValueError(f"metric {name!r} is listed as not per-request: {NOT_PER_REQUEST[name]}")
        _REGISTRY[name] = MetricSpec(name, params, evaluate, higher_is_better, citation, reexplains, plan)
        return evaluate

    return decorate


def get_metric(name: str) -> MetricSpec:
    """The metric called ``name``; :class:`NotFound` lists the registered names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise NotFound("metric", name, _REGISTRY) from None


def list_metrics() -> list[MetricSpec]:
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def metric_rng(seed: int, name: str) -> np.random.Generator:
    """The metric's own generator: depends on the request's seed and the metric's name only, so a
    metric's value does not change with the other metrics requested alongside it."""
    return np.random.default_rng([seed, *name.encode()])
