"""Evaluation metrics on analytic models whose values are known, and the evaluate() front door."""

from __future__ import annotations

import builders
import numpy as np
import pytest

from onnxplain.explainers import (
    Evaluator,
    Explanation,
    MetricResult,
    ModelConfig,
    Objective,
    OnnxClassifier,
    Planned,
    Progress,
    RunContext,
    evaluate,
    evaluate_once,
)
from onnxplain.explainers.errors import Cancelled, InvalidArgument, NotFound
from onnxplain.explainers.methods.occlusion import OcclusionParams
from onnxplain.explainers.metrics import NOT_PER_REQUEST, Subject, get_metric, list_metrics
from onnxplain.explainers.metrics.registry import metric_rng

RNG = np.random.default_rng(11)
ONE_PIXEL = {"window": 1, "stride": 1}  # occlusion with a zero baseline: exactly Σ_c w ⊙ x on a linear model


def linear_case(size: int = 6, classes: int = 2, channels: int = 2):
    w = RNG.standard_normal((classes, channels, size, size)).astype(np.float32)
    x = RNG.standard_normal((channels, size, size)).astype(np.float32)
    return OnnxClassifier(builders.linear(w)), w, x


def subject_for(classifier, x, objective, heatmaps, *, context=None) -> Subject:
    """A subject whose map is given (e.g. a random map), as if occlusion had produced it."""
    explanation = Explanation(heatmaps=np.asarray(heatmaps, np.float32), scores=np.zeros(objective.num_targets,
                                                                                          np.float32), forward=0)
    return Subject(classifier, Evaluator(classifier, context), x, objective, "occlusion",
                   OcclusionParams(window=1, stride=1), explanation, seed=0)


def run_metric(name: str, subject: Subject, **params) -> MetricResult:
    spec = get_metric(name)
    events = list(spec.evaluate(subject, spec.params.from_mapping(params), rng=metric_rng(0, name)))
    assert isinstance(events[0], Planned) and isinstance(events[-1], MetricResult)
    assert all(isinstance(e, Progress) for e in events[1:-1])
    return events[-1]


# ---------------------------------------------------------------- deletion / insertion
def test_deletion_with_the_exact_attribution_follows_the_optimal_curve_and_a_random_map_is_worse():
    classifier, w, x = linear_case()
    objective = Objective.for_classes([1], 2)
    _, results = evaluate_once(classifier, x, "occlusion", objective, ONE_PIXEL,
                               {"deletion": {"steps": 36, "score": "objective", "baseline": "zero"}})
    deletion = results["deletion"]
    contributions = np.sort((w[1] * x).sum(0).ravel())[::-1]  # exact attribution (x − 0) ⊙ w, MoRF order
    optimal = contributions.sum() - np.concatenate([[0.0], np.cumsum(contributions)])  # after k removals
    curve = deletion.curves[0]
    np.testing.assert_allclose(curve.x, np.arange(37) / 36, atol=1e-7)
    np.testing.assert_allclose(curve.y[0], optimal, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(deletion.values[0], np.trapezoid(optimal, curve.x), rtol=1e-4, atol=1e-4)
    assert deletion.higher_is_better is False and deletion.forward == 37

    random_map = subject_for(classifier, x, objective, RNG.standard_normal((1, 6, 6)))
    worse = run_metric("deletion", random_map, steps=36, score="objective")
    assert np.all(worse.curves[0].y[0] >= curve.y[0] - 1e-4)  # no order removes more score at any step
    assert worse.values[0] > deletion.values[0] + 0.1


def test_insertion_mirrors_deletion_and_lerf_reverses_the_reading():
    classifier, w, x = linear_case()
    objective = Objective.for_classes([0], 2)
    exact = (w[0] * x).sum(0)[None]
    subject = subject_for(classifier, x, objective, exact)
    canvas = np.zeros_like(x)
    insertion = run_metric("insertion", subject, steps=36, score="objective", baseline="zero")
    contributions = np.sort(exact.ravel())[::-1]
    np.testing.assert_allclose(insertion.curves[0].y[0], np.concatenate([[0.0], np.cumsum(contributions)])
                               + (w[0] * canvas).sum(), rtol=1e-4, atol=1e-4)
    worse = run_metric("insertion", subject_for(classifier, x, objective, RNG.standard_normal((1, 6, 6))),
                       steps=36, score="objective", baseline="zero")
    assert insertion.higher_is_better and insertion.values[0] > worse.values[0] + 0.1
    lerf = run_metric("deletion", subject, steps=36, score="objective", order="lerf")
    np.testing.assert_allclose(lerf.curves[0].y[0], contributions.sum() - np.concatenate(
        [[0.0], np.cumsum(contributions[::-1])]), rtol=1e-4, atol=1e-4)
    assert lerf.higher_is_better is True


def test_each_target_follows_its_own_map_and_probability_scores_are_softmaxed():
    classifier, w, x = linear_case(classes=3)
    objective = Objective.for_classes([0, 2], 3)
    maps = np.stack([(w[0] * x).sum(0), (w[2] * x).sum(0)])
    result = run_metric("deletion", subject_for(classifier, x, objective, maps), steps=4)
    ranks = np.argsort(-maps.reshape(2, -1), axis=1)
    for t, cls in enumerate((0, 2)):
        kept = np.ones(36, bool)
        kept[ranks[t, :9]] = False  # step 1 of 4 removes 9 of 36 pixels
        logits = (w.reshape(3, 2, 36) * (x.reshape(2, 36) * kept)).sum((1, 2))
        probability = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        np.testing.assert_allclose(result.curves[0].y[t, 1], probability[cls], rtol=1e-4)
    assert result.curves[0].y_label == "probability of the target"


# ---------------------------------------------------------------- the front door
def test_planned_counts_the_passes_actually_used_and_progress_covers_the_whole_request():
    classifier, _, x = linear_case()
    events = list(evaluate(classifier, x, "occlusion", Objective.for_classes([0, 1], 2), ONE_PIXEL,
                           {"deletion": {"steps": 5}, "insertion": {"steps": 3}}))
    planned = events[0]
    assert isinstance(planned, Planned) and planned.forward == (36 + 1) + 2 * 6 + 2 * 4
    explanation = next(e for e in events if isinstance(e, Explanation))
    results = [e for e in events if isinstance(e, MetricResult)]
    assert [r.metric for r in results] == ["deletion", "insertion"] and events[-1] is results[-1]
    assert explanation.forward + sum(r.forward for r in results) == planned.forward
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[-1].done == planned.total and all(p.total == planned.total for p in progress)
    assert [p.done for p in progress] == sorted(p.done for p in progress)


@pytest.mark.parametrize(("metrics", "field"), [
    ({"deletion": {"steps": 0}}, "metrics.deletion.steps"),
    ({"deletion": {"order": "sideways"}}, "metrics.deletion.order"),
    ({"insertion": {"baseline": "plaid"}}, "metrics.insertion.baseline"),
    ({"deletion": {"stepz": 3}}, "metrics.deletion.stepz"),
    ({"deletion": {"steps": 37}}, "metrics.deletion.steps"),  # more steps than the 36 pixels
    (("deletion", "deletion"), "metrics"),
    ((), "metrics"),
    (("roar",), "metrics"),
])
def test_bad_metric_requests_are_refused_by_name_before_any_evaluation(metrics, field):
    classifier, _, x = linear_case()
    context = RunContext()
    with pytest.raises(InvalidArgument) as error:
        list(evaluate(classifier, x, "occlusion", Objective.for_classes([0], 2), ONE_PIXEL, metrics, context=context))
    assert error.value.field == field
    assert context.forward == 0


def test_unknown_metric_lists_the_registered_ones_and_roar_is_not_registered():
    classifier, _, x = linear_case()
    with pytest.raises(NotFound, match="deletion"):
        list(evaluate(classifier, x, "occlusion", Objective.for_classes([0], 2), metrics=("delete",)))
    assert "roar" in NOT_PER_REQUEST and "roar" not in {spec.name for spec in list_metrics()}
    assert all(spec.summary and spec.citation for spec in list_metrics())


def test_a_cancelled_request_stops_between_batches():
    _, w, x = linear_case()
    classifier = OnnxClassifier(builders.linear(w), config=ModelConfig(max_batch=4))
    context = RunContext()
    events = evaluate(classifier, x, "occlusion", Objective.for_classes([0], 2), ONE_PIXEL,
                      {"deletion": {"steps": 36}}, context=context)
    seen = []
    with pytest.raises(Cancelled):
        for event in events:
            seen.append(event)
            if isinstance(event, Explanation):
                explained = context.forward
            elif isinstance(event, Progress) and any(isinstance(e, Explanation) for e in seen):
                context.cancel()  # during the metric, after its first batch
    assert not any(isinstance(e, MetricResult) for e in seen)
    assert context.forward == explained + 4  # one batch of the metric, then it stopped
