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
from onnxplain.explainers.perturb.imputation import impute

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
    ({"road": {"steps": 1}}, "metrics.road.steps"),  # one point has no area: every map would score 0
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


# ---------------------------------------------------------------- ROAD
def test_noisy_linear_imputation_is_exact_on_a_linear_ramp_inside_the_image():
    rows, cols = np.mgrid[0:10, 0:12].astype(np.float32)
    ramp = np.stack([0.3 * rows - 0.7 * cols + 2.0, 1.1 * cols + 0.2 * rows])  # [2, 10, 12]
    removed = np.zeros((10, 12), bool)
    removed[2:8, 3:9] = True
    removed[5, 1] = True  # an isolated pixel next to kept ones
    imputed = impute(ramp, removed, 0.0, np.random.default_rng(0))
    np.testing.assert_allclose(imputed, ramp, atol=1e-4)
    noisy = impute(ramp, removed, 0.5, np.random.default_rng(0))
    assert np.array_equal(noisy[:, ~removed], ramp[:, ~removed])  # noise only where imputed
    assert 0.3 < np.std(noisy[:, removed] - ramp[:, removed]) < 0.7
    with pytest.raises(ValueError, match="every pixel"):
        impute(ramp, np.ones((10, 12), bool), 0.0, np.random.default_rng(0))


def test_road_morf_with_the_exact_map_beats_a_random_map_and_plans_its_passes():
    classifier, w, x = linear_case(size=8)
    objective = Objective.for_classes([0], 2)
    events = list(evaluate(classifier, x, "occlusion", objective, ONE_PIXEL,
                           {"road": {"steps": 8, "score": "objective", "noise": 0.0}}))
    road = events[-1]
    assert events[0].forward == 64 + 1 + 8 and road.forward == 8
    curve = road.curves[0]
    np.testing.assert_allclose(curve.x, np.arange(8) / 8)
    np.testing.assert_allclose(curve.y[0, 0], (w[0] * x).sum(), rtol=1e-5)  # nothing imputed yet
    random_map = subject_for(classifier, x, objective, RNG.standard_normal((1, 8, 8)))
    worse = run_metric("road", random_map, steps=8, score="objective", noise=0.0)
    assert road.values[0] < worse.values[0] - 0.1 and not road.higher_is_better


# ---------------------------------------------------------------- infidelity, max-sensitivity
@pytest.mark.parametrize("normalize", [False, True])
def test_infidelity_is_zero_for_the_exact_attribution_of_a_linear_model_and_positive_for_a_wrong_map(normalize):
    classifier, w, x = linear_case()
    objective = Objective.for_classes([0, 1], 2)
    params = {"perturbations": 40, "normalize": normalize}
    events = list(evaluate(classifier, x, "occlusion", objective, ONE_PIXEL, {"infidelity": params}))
    exact = events[-1]
    assert events[0].forward == 37 + 41 and exact.forward == 41
    typical = np.mean([(w[t] * x).sum() ** 2 for t in range(2)]) * 0.1 ** 2
    assert np.all(exact.values < 1e-8 * typical + 1e-9)
    wrong = run_metric("infidelity", subject_for(classifier, x, objective, RNG.standard_normal((2, 6, 6))), **params)
    assert np.all(wrong.values > 1e-3 * typical)


def test_infidelity_normalisation_makes_the_value_independent_of_the_map_scale():
    classifier, _, x = linear_case()
    objective = Objective.for_classes([1], 2)
    noisy = RNG.standard_normal((1, 6, 6))
    one = run_metric("infidelity", subject_for(classifier, x, objective, noisy), perturbations=20)
    ten = run_metric("infidelity", subject_for(classifier, x, objective, 10 * noisy), perturbations=20)
    np.testing.assert_allclose(one.values, ten.values, rtol=1e-4)
    np.testing.assert_allclose(one.extras["beta"], 10 * ten.extras["beta"], rtol=1e-4)


def test_max_sensitivity_is_zero_for_gradients_of_a_linear_model_and_positive_on_a_relu_net():
    classifier, _, x = linear_case()
    objective = Objective.for_classes([0], 2)
    events = list(evaluate(classifier, x, "saliency", objective, None,
                           {"max_sensitivity": {"perturbations": 3, "radius": 0.5}}))
    planned, linear = events[0], events[-1]
    explanation = next(e for e in events if isinstance(e, Explanation))
    assert linear.values[0] == 0.0
    assert planned.total == explanation.forward + explanation.backward + linear.forward + linear.backward
    assert linear.forward == 3 * explanation.forward and linear.backward == 3 * explanation.backward

    cnn = OnnxClassifier(builders.small_cnn(size=8))
    image = RNG.standard_normal((3, 8, 8)).astype(np.float32)
    _, results = evaluate_once(cnn, image, "saliency", Objective.for_classes([1], 3), None,
                               {"max_sensitivity": {"perturbations": 3, "radius": 0.5}})
    assert results["max_sensitivity"].values[0] > 0.01


# ---------------------------------------------------------------- pointing games
def quadrant_case():
    classifier = OnnxClassifier(builders.quadrant(size=16))
    return classifier, RNG.uniform(0.5, 1.5, (3, 16, 16)).astype(np.float32), Objective.for_classes([1], 2)


def test_pointing_games_on_a_model_that_looks_at_the_top_left_quadrant():
    classifier, x, objective = quadrant_case()
    top_left = {"box": (0, 0, 8, 8)}
    bottom_right = {"box": (8, 8, 16, 16), "tolerance": 0.0}
    mask = np.zeros((16, 16), np.float32)
    mask[:8, :8] = 1
    _, hit = evaluate_once(classifier, x, "occlusion", objective, ONE_PIXEL,
                           {"pointing_game": top_left, "energy_pointing_game": {"mask": mask}})
    assert hit["pointing_game"].values[0] == 1.0 and hit["pointing_game"].forward == 0
    np.testing.assert_allclose(hit["energy_pointing_game"].values[0], 1.0, rtol=1e-6)  # the map is 0 elsewhere
    _, miss = evaluate_once(classifier, x, "occlusion", objective, ONE_PIXEL,
                            {"pointing_game": bottom_right, "energy_pointing_game": {"box": (8, 8, 16, 16)}})
    assert miss["pointing_game"].values[0] == 0.0 and miss["energy_pointing_game"].values[0] == 0.0
    near = run_metric("pointing_game", subject_for(classifier, x, objective, np.pad(np.ones((1, 1, 1)),
                                                                                     ((0, 0), (7, 8), (7, 8)))),
                      box=(8, 8, 16, 16), tolerance=1.5)  # the peak at (7, 7) is √2 from (8, 8)
    assert near.values[0] == 1.0


@pytest.mark.parametrize(("metrics", "field"), [
    ({"pointing_game": {}}, "metrics.pointing_game.box"),
    ({"pointing_game": {"box": (4, 4, 2, 8)}}, "metrics.pointing_game.box"),
    ({"pointing_game": {"box": (1, 2, 3)}}, "metrics.pointing_game.box"),
    ({"energy_pointing_game": {"box": (20, 20, 30, 30)}}, "metrics.energy_pointing_game.box"),
    ({"energy_pointing_game": {"mask": np.ones((4, 4))}}, "metrics.energy_pointing_game.mask"),
    ({"infidelity": {"perturbations": 0}}, "metrics.infidelity.perturbations"),
    ({"max_sensitivity": {"radius": -1.0}}, "metrics.max_sensitivity.radius"),
    ({"road": {"noise": float("nan")}}, "metrics.road.noise"),
])
def test_bad_region_and_robustness_parameters_are_refused_before_any_evaluation(metrics, field):
    classifier, x, objective = quadrant_case()
    context = RunContext()
    with pytest.raises(InvalidArgument) as error:
        list(evaluate(classifier, x, "occlusion", objective, ONE_PIXEL, metrics, context=context))
    assert error.value.field == field and context.forward == 0


def test_a_non_finite_metric_value_is_an_error_not_a_result(monkeypatch):
    from onnxplain.explainers.errors import NonFiniteResult
    from onnxplain.explainers.metrics import registry

    spec = get_metric("pointing_game")

    def broken(subject, params, *, rng):
        yield Planned(forward=0)
        yield MetricResult("pointing_game", np.array([np.nan], np.float32), higher_is_better=True)

    monkeypatch.setitem(registry._REGISTRY, "pointing_game", registry.MetricSpec(
        spec.name, spec.params, broken, True, spec.citation, False, spec.plan))
    classifier, x, objective = quadrant_case()
    with pytest.raises(NonFiniteResult, match="pointing_game"):
        list(evaluate(classifier, x, "occlusion", objective, ONE_PIXEL, {"pointing_game": {"box": (0, 0, 4, 4)}}))


def test_the_same_seed_gives_the_same_values_whatever_else_is_requested():
    classifier, _, x = linear_case()
    objective = Objective.for_classes([0], 2)
    _, alone = evaluate_once(classifier, x, "occlusion", objective, ONE_PIXEL, {"infidelity": {"perturbations": 8}},
                             seed=5)
    _, both = evaluate_once(classifier, x, "occlusion", objective, ONE_PIXEL,
                            {"road": {"steps": 3}, "infidelity": {"perturbations": 8}}, seed=5)
    _, other = evaluate_once(classifier, x, "occlusion", objective, ONE_PIXEL, {"infidelity": {"perturbations": 8}},
                             seed=6)
    assert alone["infidelity"].extras == both["infidelity"].extras != other["infidelity"].extras


def test_pixel_ranks_order_the_map_and_break_ties_at_random():
    from onnxplain.explainers.perturb.masks.ranked import pixel_ranks

    heatmap = np.array([[[0.5, 3.0], [-1.0, 2.0]]], np.float32)
    np.testing.assert_array_equal(pixel_ranks(heatmap, "morf", np.random.default_rng(0)), [[[2, 0], [3, 1]]])
    np.testing.assert_array_equal(pixel_ranks(heatmap, "lerf", np.random.default_rng(0)), [[[1, 3], [0, 2]]])
    flat = np.zeros((1, 8, 8), np.float32)
    orders = {tuple(pixel_ranks(flat, "morf", np.random.default_rng(seed)).ravel()) for seed in range(3)}
    assert len(orders) == 3 and all(sorted(order) == list(range(64)) for order in orders)


METRIC_BUDGETS = {"deletion": {"steps": 4}, "insertion": {"steps": 4}, "road": {"steps": 3},
                  "max_sensitivity": {"perturbations": 2}, "infidelity": {"perturbations": 4},
                  "pointing_game": {"box": [0.0, 0.0, 8.0, 8.0]}, "energy_pointing_game": {"box": [0.0, 0.0, 8.0, 8.0]},
                  "sanity_cascading": {"steps": 2}, "sanity_independent": {"steps": 2}}


@pytest.mark.parametrize("metric", [spec.name for spec in list_metrics()])
def test_every_metric_uses_exactly_the_passes_it_planned(metric):
    """The whole request's plan (what the server's evaluation limit checks before any work) equals the passes
    the method and the metric really run, forward and backward, for every registered metric."""
    classifier = OnnxClassifier(builders.small_cnn(seed=0))
    image = np.random.default_rng(1).standard_normal(classifier.model_input.shape).astype(np.float32)
    events = list(evaluate(classifier, image, "saliency", Objective.for_classes([0, 2], 3), None,
                           {metric: METRIC_BUDGETS.get(metric, {})}))
    planned = events[0]
    explanation = next(e for e in events if isinstance(e, Explanation))
    (result,) = [e for e in events if isinstance(e, MetricResult)]
    assert (explanation.forward + result.forward, explanation.backward + result.backward) == \
        (planned.forward, planned.backward)
