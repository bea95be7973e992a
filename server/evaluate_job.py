"""One Evaluate request, start to finish, as a synchronous generator of response messages.

Runs on a worker thread like :func:`~.explain_job.run_explain` and shares its pieces: the explanation part
of the request is resolved exactly as Explain resolves it; every metric name and parameter is checked
before any model evaluation; the whole evaluation's planned passes (the top-k forward, the explanation,
every metric's own passes and re-explanations) must fit the server's per-request limit. The library's
front door :func:`onnxplain.explainers.evaluate` does the work; this module only maps its events:

    Planned -> accepted, Progress -> progress, Explanation -> explanation, MetricResult -> metric, then done.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from onnxplain.explainers import Explanation, Planned, Progress, RunContext, evaluate
from onnxplain.explainers.errors import InvalidArgument
from onnxplain.explainers.evaluate import resolve_metrics
from onnxplain.explainers.metrics import MetricResult
from onnxplain.explainers.params import MethodParams
from onnxplain.v1 import explanation_service_pb2 as ex_pb2
from onnxplain.v1.wire import from_tensor, to_tensor

from .explain_job import ProgressMessages, check_planned, explanation_result, prepare_explanation
from .limits import ServerLimits
from .repository import ModelRepository


def run_evaluate(
    request: ex_pb2.EvaluateRequest, repository: ModelRepository, limits: ServerLimits, context: RunContext
) -> Iterator[ex_pb2.EvaluateResponse]:
    rid = request.request_id
    explanation = request.explanation
    if explanation.request_id not in ("", rid):
        raise InvalidArgument("explanation.request_id", "must be empty or equal to request_id (the stream's id)")
    metrics = metric_params(request.metrics)  # checked before the image is decoded or the model runs
    job = prepare_explanation(explanation, repository, limits, context)
    progress = ProgressMessages(explanation.output, context, job.spent)
    plans = [ex_pb2.MetricPlan(metric=name, parameters={k: str(v) for k, v in params.as_dict().items()})
             for name, params in metrics.items()]
    events = evaluate(job.classifier, job.image.tensor, job.spec.name, job.objective, job.params, metrics,
                      seed=job.seed, context=context, companions=repository.companion)
    lap = time.perf_counter()
    for event in events:
        if isinstance(event, Planned):
            check_planned(job.spent + event.total, limits, f"evaluating {job.spec.name} by {', '.join(metrics)}")
            accepted = ex_pb2.EvaluateAccepted(accepted=job.accepted(event.total), metrics=plans)
            yield ex_pb2.EvaluateResponse(request_id=rid, accepted=accepted)
        elif isinstance(event, Progress):
            yield ex_pb2.EvaluateResponse(request_id=rid, progress=progress.message(event))
        elif isinstance(event, Explanation):
            result = explanation_result(event, job, explanation.output)
            lap = time.perf_counter()
            yield ex_pb2.EvaluateResponse(request_id=rid, explanation=result)
        elif isinstance(event, MetricResult):
            message = metric_message(event, time.perf_counter() - lap)
            lap = time.perf_counter()
            yield ex_pb2.EvaluateResponse(request_id=rid, metric=message)
    done = ex_pb2.EvaluateDone(forward_evaluations=context.forward, backward_evaluations=context.backward,
                               elapsed_seconds=time.perf_counter() - job.started, warnings=job.warnings)
    yield ex_pb2.EvaluateResponse(request_id=rid, done=done)


def metric_params(requests: Any) -> dict[str, MethodParams]:
    """MetricRequest messages -> {metric name: its checked parameters}, in request order (the library's
    :func:`~onnxplain.explainers.evaluate.resolve_metrics` checks names and values).

    Raises:
        NotFound: an unknown metric (the message lists the registered ones).
        InvalidArgument: no metric, a metric twice, a metric that is not per request (ROAR), or a bad
        parameter (field ``metrics.<metric>.<parameter>``).
    """
    values: dict[str, dict[str, Any]] = {}
    for index, item in enumerate(requests):
        if item.metric in values:
            raise InvalidArgument(f"metrics[{index}].metric", f"{item.metric!r} is requested twice; ask for each "
                                                              "metric once")
        values[item.metric] = {name: parameter_value(value, f"metrics.{item.metric}.{name}")
                               for name, value in item.parameters.items()}
    return {spec.name: params for spec, params in resolve_metrics(values)}


def parameter_value(value: ex_pb2.ParameterValue, field: str) -> Any:
    """A typed ParameterValue -> the Python value the parameter dataclass checks (kind, bounds, choices)."""
    kind = value.WhichOneof("kind")
    if kind is None:
        raise InvalidArgument(field, "no value set; set one of number, integer, text, flag, numbers, tensor")
    if kind == "numbers":
        return tuple(value.numbers.values)
    if kind == "tensor":
        return from_tensor(value.tensor, field=f"{field}.tensor")
    return getattr(value, kind)


def metric_message(result: MetricResult, seconds: float) -> ex_pb2.MetricResult:
    """The wire form of one metric's result (curves' y as FP32 [targets, K])."""
    message = ex_pb2.MetricResult(
        metric=result.metric, values=[float(v) for v in result.values], higher_is_better=result.higher_is_better,
        extras={k: float(v) for k, v in result.extras.items()}, forward_evaluations=result.forward,
        backward_evaluations=result.backward, elapsed_seconds=seconds,
    )
    for curve in result.curves:
        message.curves.add(name=curve.name, x=[float(v) for v in curve.x], y=to_tensor(curve.y.astype("float32")),
                           x_label=curve.x_label, x_ticks=list(curve.x_ticks), y_label=curve.y_label)
    return message
