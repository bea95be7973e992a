"""The library's front door for evaluation: run a method once, then score its explanation with metrics."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .blas import one_blas_thread
from .context import RunContext
from .errors import InvalidArgument, NonFiniteResult
from .events import Event, Explanation, Planned, Progress
from .explain import explain, method_params
from .metrics.registry import NOT_PER_REQUEST, MetricParams, MetricSpec, PlanInput, get_metric, metric_rng
from .metrics.result import MetricResult
from .metrics.subject import Subject
from .model import Evaluator, OnnxClassifier
from .model.companions import CompanionModel, CompanionResolver
from .objectives import Objective
from .params import MethodParams

MetricRequest = Sequence[str] | Mapping[str, MetricParams | Mapping[str, Any] | None]
"""Metric names (paper defaults), or a mapping of metric name → its parameters."""


def evaluate(
    classifier: OnnxClassifier,
    image: NDArray[np.float32],
    method: str,
    objective: Objective,
    params: MethodParams | Mapping[str, Any] | None = None,
    metrics: MetricRequest = ("deletion",),
    *,
    seed: int = 0,
    context: RunContext | None = None,
    companions: Mapping[str, CompanionModel] | CompanionResolver | None = None,
) -> Iterator[Event | MetricResult]:
    """Explain ``image`` [C, H, W] with ``method`` once, then evaluate the explanation with each metric.

    Everything (method, its parameters, metric names and all metric parameters, image, objective) is
    checked before any model evaluation. Yields one :class:`Planned` for the whole request (the
    method's passes plus each metric's plan), :class:`Progress` with ``done``/``total`` over the whole
    evaluation (the method's partial heatmaps ride along), the :class:`Explanation` under evaluation,
    then one :class:`MetricResult` per metric, in the order requested, with ``forward``/``backward``
    the passes that metric caused. Every pass runs through ``context``: a cancelled request stops
    between batches. Metric ``i`` draws from a generator seeded by (``seed``, its name). ``companions``:
    as :func:`~explainers.explain.explain` takes them, for the method and its re-explanations.

    Raises:
        NotFound: unknown method or metric. InvalidArgument: bad parameter, image or objective, a
            metric that is not per request (ROAR), none or a repeated metric.
        NonFiniteResult: a metric produced NaN or inf from a finite input.
    """
    context = context or RunContext()
    requested = resolve_metrics(metrics)
    resolved_params = method_params(method, params)
    counted_before = context.forward + context.backward

    def used() -> int:
        return context.forward + context.backward - counted_before

    steps = explain(classifier, image, method, objective, resolved_params, seed=seed, context=context,
                    companions=companions)
    try:
        method_planned = next(steps)  # explain() checks the image and objective; methods plan before any pass
        if not isinstance(method_planned, Planned):
            raise AssertionError(f"{method} must yield Planned first")
        given = PlanInput(classifier, classifier.model_input.shape, objective, method, resolved_params, method_planned)
        plans = [_renamed(spec.name, spec.plan, metric_params, given) for spec, metric_params in requested]
        planned = Planned(forward=method_planned.forward + sum(p.forward for p in plans),
                          backward=method_planned.backward + sum(p.backward for p in plans))
        yield planned
        explanation = None
        for event in steps:
            if isinstance(event, Progress):
                yield Progress(done=used(), total=max(planned.total, used()), heatmaps=event.heatmaps)
            elif isinstance(event, Explanation):
                explanation = event
        assert explanation is not None, f"{method} must end with an Explanation"
    finally:
        steps.close()
    yield explanation

    frozen = np.array(image, dtype=np.float32, copy=True)
    frozen.setflags(write=False)
    subject = Subject(classifier, Evaluator(classifier, context), frozen, objective, method, resolved_params,
                      explanation, seed, companions)
    for spec, metric_params in requested:
        context.check()
        forward, backward = context.forward, context.backward
        result = None
        events = spec.evaluate(subject, metric_params, rng=metric_rng(seed, spec.name))
        try:
            while True:
                with one_blas_thread():  # onnxruntime owns the cores while the metric works
                    event = next(events, None)
                if event is None:
                    break
                if isinstance(event, Progress):
                    yield Progress(done=used(), total=max(planned.total, used()))
                elif isinstance(event, MetricResult):
                    result = event
        finally:
            events.close()
        assert result is not None and result.metric == spec.name, f"metric {spec.name} must end with its MetricResult"
        if not result.is_finite():
            raise NonFiniteResult(f"metric {spec.name} produced NaN or infinite values from a finite input (a bug, or "
                                  "a model whose scores overflow); nothing is returned as a result")
        yield dataclasses.replace(result, forward=context.forward - forward, backward=context.backward - backward)


def evaluate_once(*args: Any, **kwargs: Any) -> tuple[Explanation, dict[str, MetricResult]]:
    """Drain :func:`evaluate`: the explanation and the results by metric name."""
    explanation, results = None, {}
    for event in evaluate(*args, **kwargs):
        if isinstance(event, Explanation):
            explanation = event
        elif isinstance(event, MetricResult):
            results[event.metric] = event
    assert explanation is not None
    return explanation, results


def resolve_metrics(metrics: MetricRequest) -> list[tuple[MetricSpec, MetricParams]]:
    """The requested metrics with their parameters, checked (names, duplicates, every parameter).

    Raises:
        NotFound: an unknown metric. InvalidArgument: none requested, a repeated or not-per-request
            metric, or a bad parameter (field ``metrics.<name>.<parameter>``).
    """
    if isinstance(metrics, str):
        metrics = (metrics,)
    items = list(metrics.items()) if isinstance(metrics, Mapping) else [(name, None) for name in metrics]
    if not items:
        raise InvalidArgument("metrics", "no metric requested; name at least one (e.g. deletion)")
    seen: set[str] = set()
    resolved = []
    for name, given in items:
        if name in NOT_PER_REQUEST:
            raise InvalidArgument("metrics", f"{name!r} is not available: {NOT_PER_REQUEST[name]}")
        spec = get_metric(name)
        if name in seen:
            raise InvalidArgument("metrics", f"{name!r} is requested twice; request each metric once")
        seen.add(name)
        if given is None or isinstance(given, Mapping):
            resolved.append((spec, _renamed(name, spec.params.from_mapping, given or {})))
        elif isinstance(given, spec.params):
            resolved.append((spec, given))
        else:
            raise InvalidArgument(f"metrics.{name}", f"{type(given).__name__} given; {name} takes {spec.params.__name__}")
    return resolved


def _renamed(metric: str, function, *args):
    """Call ``function``; a parameter error's field ``metric_params.x`` becomes ``metrics.<metric>.x``."""
    try:
        return function(*args)
    except InvalidArgument as error:
        prefix = MetricParams.field_prefix + "."
        if not error.field.startswith(prefix):
            raise
        raise InvalidArgument(f"metrics.{metric}.{error.field[len(prefix):]}", error.description) from None
