"""Integrated Gradients: quadrature rules, path baselines, analytic models, completeness, Captum."""

from __future__ import annotations

from pathlib import Path

import builders
import numpy as np
import onnx
import pytest
from PIL import Image

from onnxplain.explainers import Explanation, Objective, OnnxClassifier, Progress, explain, explain_once
from onnxplain.explainers.errors import InvalidArgument
from onnxplain.explainers.perturb.baselines import make_baseline
from onnxplain.explainers.perturb.paths import (
    QUADRATURE,
    check_baseline_tensor,
    path_baseline,
    quadrature,
    straight_path,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RNG = np.random.default_rng(17)


# ---------------------------------------------------------------- quadrature and paths
@pytest.mark.parametrize("rule", QUADRATURE)
def test_weights_sum_to_one_and_nodes_lie_in_the_unit_interval(rule):
    q = quadrature(rule, 9)
    assert len(q) == 9 and q.weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all((q.alphas >= 0) & (q.alphas <= 1)) and np.all(np.diff(q.alphas) > 0)


@pytest.mark.parametrize("rule, exact_degree", [("gauss_legendre", 2 * 6 - 1), ("trapezoid", 1), ("riemann_middle", 1)])
def test_rules_integrate_polynomials_exactly_up_to_their_degree(rule, exact_degree):
    q = quadrature(rule, 6)
    for degree in range(exact_degree + 1):
        assert (q.weights * q.alphas**degree).sum() == pytest.approx(1 / (degree + 1), abs=1e-12)


def test_nodes_match_captums_approximation_methods():
    n = 5
    np.testing.assert_allclose(quadrature("riemann_left", n).alphas, np.linspace(0, 1 - 1 / n, n))
    np.testing.assert_allclose(quadrature("riemann_right", n).alphas, np.linspace(1 / n, 1, n))
    np.testing.assert_allclose(quadrature("riemann_middle", n).alphas, np.linspace(1 / (2 * n), 1 - 1 / (2 * n), n))
    np.testing.assert_allclose(quadrature("trapezoid", n).alphas, np.linspace(0, 1, n))
    nodes, weights = np.polynomial.legendre.leggauss(n)
    np.testing.assert_allclose(quadrature("gauss_legendre", n).alphas, 0.5 * (1 + nodes))
    np.testing.assert_allclose(quadrature("gauss_legendre", n).weights, 0.5 * weights)


def test_endpoints_are_found_and_the_path_hits_them_exactly():
    assert quadrature("trapezoid", 4).index_of(0.0) == 0 and quadrature("trapezoid", 4).index_of(1.0) == 3
    assert quadrature("riemann_left", 4).index_of(1.0) is None and quadrature("riemann_right", 4).index_of(0.0) is None
    assert quadrature("gauss_legendre", 4).index_of(0.0) is None
    start, end = RNG.standard_normal((2, 1, 3, 4, 4)).astype(np.float32)
    points = straight_path(np.repeat(start, 3, 0), np.repeat(end, 3, 0), [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(points[0], start[0])
    np.testing.assert_array_equal(points[2], end[0])
    np.testing.assert_allclose(points[1], (start[0] + end[0]) / 2, rtol=1e-6)


def test_path_baselines():
    x = RNG.standard_normal((3, 10, 12)).astype(np.float32)
    assert not path_baseline(x, "zero", rng=np.random.default_rng(0)).any()
    np.testing.assert_array_equal(path_baseline(x, "blur", rng=np.random.default_rng(0)), make_baseline(x, "blur"))
    noise = path_baseline(x, "uniform_noise", rng=np.random.default_rng(4))
    np.testing.assert_array_equal(noise, path_baseline(x, "uniform_noise", rng=np.random.default_rng(4)))
    assert noise.dtype == np.float32 and x.min() <= noise.min() and noise.max() <= x.max() and noise.std() > 0.3
    given = RNG.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(path_baseline(x, "tensor", rng=np.random.default_rng(0), tensor=given), given)
    with pytest.raises(InvalidArgument) as info:
        check_baseline_tensor(given[:, :5], x.shape)
    assert info.value.field == "params.baseline_tensor"


# ---------------------------------------------------------------- analytic models
@pytest.mark.parametrize("method", ["integrated_gradients", "deeplift"])
def test_the_default_baseline_is_the_black_image_through_the_models_preprocessing(method):
    """The IG paper's black image: pixel 0 normalised by the model's config, not 0 after
    normalisation (the mean colour); on a linear model attributions are (x − x′) ⊙ w exactly."""
    from onnxplain.explainers import ModelConfig, Preprocessing
    from onnxplain.explainers.model import preprocess

    w = RNG.standard_normal((2, 3, 8, 8)).astype(np.float32)
    pre = Preprocessing(scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    classifier = OnnxClassifier(builders.linear(w), config=ModelConfig(preprocessing=pre))
    photo_of_black, _ = preprocess(Image.new("RGB", (8, 8)), pre, size=(8, 8), channels=3)
    np.testing.assert_allclose(classifier.black_image(), photo_of_black, rtol=1e-6)
    np.testing.assert_allclose(classifier.black_image()[:, 0, 0], [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225],
                               rtol=1e-6)
    x = RNG.standard_normal((3, 8, 8)).astype(np.float32)
    objective = Objective.for_classes([1], 2)
    by_default = explain_once(classifier, x, method, objective).heatmaps[0]
    np.testing.assert_allclose(by_default, ((x - classifier.black_image()) * w[1]).sum(0), rtol=1e-4, atol=1e-4)
    zero = explain_once(classifier, x, method, objective, {"baseline": "zero"}).heatmaps[0]
    np.testing.assert_allclose(zero, (x * w[1]).sum(0), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rule", QUADRATURE)
@pytest.mark.parametrize("baseline", ["black", "zero", "blur", "uniform_noise", "tensor"])
def test_linear_model_is_explained_exactly_by_every_rule_and_baseline(rule, baseline):
    w = RNG.standard_normal((3, 3, 8, 8)).astype(np.float32)
    classifier = OnnxClassifier(builders.linear(w, bias=np.array([0.5, -1, 2], np.float32)))
    x = RNG.standard_normal((3, 8, 8)).astype(np.float32)
    tensor = RNG.standard_normal(x.shape).astype(np.float32) if baseline == "tensor" else None
    objective = Objective(np.stack([np.eye(3, dtype=np.float32)[0], [0, 1, -1]]), (0, 1))  # a class, a contrast
    params = {"rule": rule, "steps": 5, "baseline": baseline, "baseline_tensor": tensor}
    result = explain_once(classifier, x, "integrated_gradients", objective, params, seed=3)
    reference = path_baseline(x, baseline, rng=np.random.default_rng(3), tensor=tensor, black=classifier.black_image())
    for t, weights in enumerate([w[0], w[1] - w[2]]):
        np.testing.assert_allclose(result.heatmaps[t], ((x - reference) * weights).sum(0), atol=3e-5)
        assert abs(result.extras[f"completeness_gap[{t}]"]) < 1e-4
    np.testing.assert_allclose(result.scores, [(w[0] * x).sum() + 0.5, ((w[1] - w[2]) * x).sum() - 3], atol=2e-5)
    assert result.extras["completeness_gap"] == result.extras["completeness_gap[0]"]


@pytest.mark.parametrize("rule, extra_forward", [("gauss_legendre", 2), ("riemann_middle", 2), ("riemann_left", 1),
                                                 ("riemann_right", 1), ("trapezoid", 0)])
def test_passes_are_m_forward_backward_per_target_plus_the_missing_path_ends(rule, extra_forward):
    classifier = OnnxClassifier(builders.small_cnn())
    x = RNG.standard_normal((3, 16, 16)).astype(np.float32)
    planned, *_, final = explain(classifier, x, "integrated_gradients", Objective.for_classes([0, 1], 3),
                                 {"rule": rule, "steps": 6})
    assert (final.forward, final.backward) == (6 * 2 + extra_forward, 6 * 2)
    assert (planned.forward, planned.backward) == (final.forward, final.backward)


def test_partial_heatmaps_stream_as_path_points_finish():
    w = RNG.standard_normal((2, 3, 8, 8)).astype(np.float32)
    classifier = OnnxClassifier(builders.linear(w), config=_config(max_batch=4))
    x = RNG.standard_normal((3, 8, 8)).astype(np.float32)
    events = list(explain(classifier, x, "integrated_gradients", Objective.for_classes([1], 2),
                          {"rule": "riemann_left", "steps": 12}))
    partials = [e for e in events if isinstance(e, Progress) and e.heatmaps is not None]
    assert [e.done for e in partials] == [8, 16, 24]  # 4 points (F + B each) per chunk
    for index, event in enumerate(partials, 1):  # the integral of the points done so far
        np.testing.assert_allclose(event.heatmaps[0], index / 3 * (x * w[1]).sum(0), atol=3e-5)
    assert isinstance(events[-1], Explanation)


@pytest.mark.parametrize("rule", ["gauss_legendre", "trapezoid"])
def test_models_ending_in_softmax_are_explained_and_checked_in_logits(rule):
    # The gradient graph differentiates the logits, which the model does not output: the gap
    # comes from one gradient pass with a reference pass; the scores stay the probabilities.
    w = RNG.standard_normal((3, 3, 6, 6)).astype(np.float32)
    classifier = OnnxClassifier(builders.linear(w, bias=np.array([1, 0, -1], np.float32), softmax=True))
    x = RNG.standard_normal((3, 6, 6)).astype(np.float32)
    planned, *_, result = explain(classifier, x, "integrated_gradients", Objective.for_classes([2], 3),
                                  {"steps": 4, "rule": rule})
    np.testing.assert_allclose(result.heatmaps[0], (x * w[2]).sum(0), atol=3e-5)
    assert result.extras["score_difference"] == pytest.approx((x * w[2]).sum(), abs=1e-4)  # in logits
    assert abs(result.extras["completeness_gap"]) < 1e-4
    assert (result.forward, result.backward) == (4 + 2, 4 + 1) == (planned.forward, planned.backward)
    logits = np.einsum("kchw,chw->k", w, x) + [1, 0, -1]
    np.testing.assert_allclose(result.scores, [np.exp(logits[2]) / np.exp(logits).sum()], rtol=1e-5)


def test_probability_objectives_are_differentiated_and_checked_in_probabilities():
    w = RNG.standard_normal((3, 3, 6, 6)).astype(np.float32)
    classifier = OnnxClassifier(builders.linear(0.1 * w, softmax=True))
    x = RNG.standard_normal((3, 6, 6)).astype(np.float32)
    objective = Objective.for_classes([0], 3, space="probability")
    result = explain_once(classifier, x, "integrated_gradients", objective, {"steps": 64})
    logits = np.einsum("kchw,chw->k", 0.1 * w, x)
    probability = np.exp(logits[0]) / np.exp(logits).sum()
    assert result.scores[0] == pytest.approx(probability, rel=1e-5)
    assert result.extras["score_difference"] == pytest.approx(probability - 1 / 3, abs=1e-6)
    assert result.extras["completeness_gap_relative"] < 1e-4
    assert (result.forward, result.backward) == (64 + 2, 64)


@pytest.mark.parametrize("name", ["convnext_legacy", "efficientnet_legacy"])
def test_completeness_on_a_smooth_fixture_with_64_gauss_legendre_steps(name):
    golden = np.load(FIXTURES / f"{name}.npz")
    assert golden["smooth"]
    classifier = OnnxClassifier(onnx.load(FIXTURES / f"{name}.onnx"))
    x = golden["x"][0]
    objective = Objective.for_classes([int(np.argmax(golden["logits"][0]))], 10)
    result = explain_once(classifier, x, "integrated_gradients", objective, {"steps": 64})
    assert result.extras["completeness_gap_relative"] < 1e-3
    assert abs(result.extras["score_difference"]) > 1e-2  # a non-trivial path


# ---------------------------------------------------------------- Captum
@pytest.fixture(scope="module")
def captum():
    return OnnxClassifier(onnx.load(FIXTURES / "captum_model.onnx")), np.load(FIXTURES / "captum_golden.npz")


@pytest.mark.parametrize("image", [0, 1])
def test_agrees_with_captum_gauss_legendre(captum, image):
    classifier, golden = captum
    objective = Objective.for_classes([int(golden["targets"][image])], 5)
    result = explain_once(classifier, golden["x"][image], "integrated_gradients", objective,
                          {"steps": int(golden["ig_steps"])})
    expected = golden["ig_gauss_legendre"][image].sum(0)
    np.testing.assert_allclose(result.heatmaps[0], expected, atol=2e-6 * np.abs(expected).max(), rtol=1e-4)
    assert abs(result.extras["completeness_gap"]) < 1e-5


@pytest.mark.parametrize("image", [0, 1])
def test_agrees_with_captum_riemann_trapezoid_with_a_tensor_baseline(captum, image):
    classifier, golden = captum
    steps = int(golden["ig_steps"])
    objective = Objective.for_classes([int(golden["targets"][image])], 5)
    result = explain_once(classifier, golden["x"][image], "integrated_gradients", objective,
                          {"steps": steps, "rule": "trapezoid", "baseline": "tensor",
                           "baseline_tensor": golden["baseline"][image]})
    # Captum's trapezoid weights are 1/n (halved at the ends), summing to (n − 1)/n; ours are the
    # trapezoid rule's 1/(n − 1), so the same nodes give n/(n − 1) times Captum's attributions.
    expected = golden["ig_trapezoid"][image].sum(0) * steps / (steps - 1)
    np.testing.assert_allclose(result.heatmaps[0], expected, atol=2e-6 * np.abs(expected).max(), rtol=1e-4)
    assert abs(result.extras["completeness_gap"]) < abs(golden["ig_trapezoid_delta"][image])


# ---------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    "params, field",
    [
        ({"steps": 1}, "params.steps"),
        ({"rule": "simpson"}, "params.rule"),
        ({"baseline": "tensor"}, "params.baseline_tensor"),
        ({"baseline_tensor": np.zeros((3, 8, 8), np.float32)}, "params.baseline_tensor"),
        ({"baseline": "tensor", "baseline_tensor": np.zeros((3, 8, 7), np.float32)}, "params.baseline_tensor"),
        ({"baseline": "tensor", "baseline_tensor": np.full((3, 8, 8), np.nan, np.float32)}, "params.baseline_tensor"),
    ],
)
def test_bad_parameters_are_rejected_by_name(params, field):
    classifier = OnnxClassifier(builders.linear(np.ones((2, 3, 8, 8), np.float32)))
    with pytest.raises(InvalidArgument) as info:
        explain_once(classifier, np.zeros((3, 8, 8), np.float32), "integrated_gradients",
                     Objective.for_classes([0], 2), params)
    assert info.value.field == field


def _config(**kwargs):
    from onnxplain.explainers import ModelConfig

    return ModelConfig(**kwargs)


@pytest.mark.parametrize(("gradient_max_batch", "targets", "progress_events"), [(4, 1, 3), (4, 3, 10), (None, 1, 1)])
def test_path_points_run_in_chunks_of_gradient_max_batch_holding_whole_images(gradient_max_batch, targets,
                                                                               progress_events):
    """One Progress per gradient chunk: 10 points in chunks of 4 rows; with 3 targets a chunk holds
    one point's 3 rows (4 // 3 · 3); unset, the forward max_batch (16) holds all 10."""
    from onnxplain.explainers import ModelConfig

    config = ModelConfig(max_batch=16, gradient_max_batch=gradient_max_batch)
    classifier = OnnxClassifier(builders.small_cnn(), config=config)
    x = RNG.standard_normal((3, 16, 16)).astype(np.float32)
    events = list(explain(classifier, x, "integrated_gradients", Objective.for_classes(list(range(targets)), 3),
                          {"steps": 10}))
    assert sum(isinstance(event, Progress) for event in events) == progress_events
    chunked = events[-1].heatmaps
    whole = explain_once(OnnxClassifier(builders.small_cnn(), config=ModelConfig(max_batch=64)), x,
                         "integrated_gradients", Objective.for_classes(list(range(targets)), 3), {"steps": 10})
    np.testing.assert_allclose(chunked, whole.heatmaps, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("layout", "channels"), [("NHWC", 3), ("NCHW", 1)])
def test_black_follows_the_config_for_nhwc_and_single_channel_models(layout, channels):
    from onnxplain.explainers import ModelConfig, Preprocessing

    w = RNG.standard_normal((2, channels, 8, 8)).astype(np.float32)
    pre = Preprocessing(mean=(120.0, 110.0, 100.0)[:channels], std=(60.0, 50.0, 40.0)[:channels], channel_order="BGR")
    classifier = OnnxClassifier(builders.linear(w, layout=layout), config=ModelConfig(preprocessing=pre))
    expected = -np.array([120 / 60, 110 / 50, 100 / 40][:channels], np.float32)  # pixel 0 in every channel
    np.testing.assert_allclose(classifier.black_image(), np.broadcast_to(expected[:, None, None], (channels, 8, 8)),
                               rtol=1e-6)
    x = RNG.standard_normal((channels, 8, 8)).astype(np.float32)
    heatmap = explain_once(classifier, x, "integrated_gradients", Objective.for_classes([0], 2)).heatmaps[0]
    np.testing.assert_allclose(heatmap, ((x - classifier.black_image()) * w[0]).sum(0), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="black image"):
        path_baseline(x, "black", rng=np.random.default_rng(0))


# ---------------------------------------------------------------- adaptive steps (completeness tolerance)
def _cubic(weights: np.ndarray) -> onnx.ModelProto:
    """logits[k] = (Σ weights[k] ⊙ x)³: along a straight path the gradient integrand is a polynomial
    of degree 2 in α, which Gauss–Legendre integrates exactly from 2 nodes on."""
    from onnx import helper

    model = builders.linear(weights)
    graph = model.graph
    graph.node[-1].output[0] = "lin"
    graph.node.extend([helper.make_node("Mul", ["lin", "lin"], ["square"]),
                       helper.make_node("Mul", ["square", "lin"], ["logits"])])
    onnx.checker.check_model(model)
    return model


def test_adaptive_steps_stop_at_the_first_path_when_the_integrand_is_polynomial():
    w = 0.3 * RNG.standard_normal((2, 3, 6, 6)).astype(np.float32)
    classifier = OnnxClassifier(_cubic(w))
    x = RNG.standard_normal((3, 6, 6)).astype(np.float32)
    planned, *_, result = explain(classifier, x, "integrated_gradients", Objective.for_classes([1], 2),
                                  {"steps": 50, "baseline": "zero", "completeness_tolerance": 1e-4})
    assert (result.extras["steps"], result.extras["steps_evaluated"], result.extras["converged"]) == (8, 8, 1)
    assert (result.forward, result.backward) == (8 + 2, 8)  # the two path ends, measured once
    assert (planned.forward, planned.backward) == (8 + 16 + 32 + 50 + 2, 8 + 16 + 32 + 50)  # the worst case
    s = float((w[1] * x).sum())  # f = s³ on the path α·x: ∂f/∂x = 3(αs)² w, ∫₀¹ 3α²s² dα = s²
    np.testing.assert_allclose(result.heatmaps[0], s**2 * (x * w[1]).sum(0), rtol=1e-4, atol=1e-5)
    assert result.extras["score_difference"] == pytest.approx(s**3, rel=1e-5)
    assert result.extras["completeness_gap_relative"] < 1e-5


def test_adaptive_steps_on_a_relu_net_report_the_gap_when_the_budget_runs_out():
    classifier = OnnxClassifier(builders.small_cnn())
    x = RNG.standard_normal((3, 16, 16)).astype(np.float32)
    objective = Objective.for_classes([0], 3)
    fixed = explain_once(classifier, x, "integrated_gradients", objective, {"steps": 24})
    unreachable = explain_once(classifier, x, "integrated_gradients", objective,
                               {"steps": 24, "completeness_tolerance": 1e-12})
    assert unreachable.extras["converged"] == 0 and unreachable.extras["completeness_gap_relative"] > 1e-12
    assert (unreachable.extras["steps"], unreachable.extras["steps_evaluated"]) == (24, 8 + 16 + 24)
    np.testing.assert_allclose(unreachable.heatmaps, fixed.heatmaps, rtol=1e-6, atol=1e-7)  # the last path = fixed
    assert unreachable.extras["completeness_gap"] == pytest.approx(fixed.extras["completeness_gap"], rel=1e-5)
    tolerance = 2 * fixed.extras["completeness_gap_relative"]  # 24 points reach it; the search may stop sooner
    reached = explain_once(classifier, x, "integrated_gradients", objective,
                           {"steps": 24, "completeness_tolerance": tolerance})
    assert reached.extras["converged"] == 1 and reached.extras["completeness_gap_relative"] <= tolerance
    assert reached.forward == reached.extras["steps_evaluated"] + 2


def test_a_fixed_budget_reports_its_steps_and_no_convergence_flag():
    classifier = OnnxClassifier(builders.small_cnn())
    result = explain_once(classifier, RNG.standard_normal((3, 16, 16)).astype(np.float32), "integrated_gradients",
                          Objective.for_classes([0], 3), {"steps": 6})
    assert (result.extras["steps"], result.extras["steps_evaluated"]) == (6, 6) and "converged" not in result.extras
