"""SmoothGrad, SmoothGrad² and VarGrad: analytic models, Monte-Carlo expectations, Captum."""

from __future__ import annotations

from pathlib import Path

import builders
import numpy as np
import onnx
import pytest

from onnxplain.explainers import Objective, OnnxClassifier, explain, explain_once
from onnxplain.explainers.errors import InvalidArgument
from onnxplain.explainers.methods import get_method, gradient_attributions

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RNG = np.random.default_rng(23)


def linear_case(classes: int = 3, size: int = 8):
    w = RNG.standard_normal((classes, 3, size, size)).astype(np.float32)
    x = RNG.standard_normal((3, size, size)).astype(np.float32)
    return w, OnnxClassifier(builders.linear(w, bias=np.arange(classes, dtype=np.float32))), x


@pytest.mark.parametrize("inner, expected", [
    ("saliency", lambda w: np.abs(w).max(0)),
    ("guided_backprop", lambda w: w.sum(0)),  # no ReLU: the gradient
    ("deconvnet", lambda w: w.sum(0)),
])
def test_noise_does_not_change_the_gradient_of_a_linear_model(inner, expected):
    w, classifier, x = linear_case()
    result = explain_once(classifier, x, "smoothgrad", Objective.for_classes([0, 2], 3),
                          {"samples": 6, "noise_level": 0.5, "inner": inner})
    for t, k in enumerate([0, 2]):
        np.testing.assert_allclose(result.heatmaps[t], expected(w[k]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(result.scores, [(w[0] * x).sum(), (w[2] * x).sum() + 2], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("inner", ["saliency", "guided_backprop", "deconvnet"])
def test_vargrad_of_a_linear_model_is_zero_and_squared_is_the_square(inner):
    w, classifier, x = linear_case()
    objective = Objective.for_classes([1], 3)
    vargrad = explain_once(classifier, x, "smoothgrad", objective, {"samples": 5, "variant": "vargrad", "inner": inner})
    np.testing.assert_array_equal(vargrad.heatmaps, 0)
    squared = explain_once(classifier, x, "smoothgrad", objective, {"samples": 5, "variant": "squared", "inner": inner})
    per_channel = np.abs(w[1]) ** 2 if inner == "saliency" else w[1] ** 2
    spec = get_method(inner)
    reduce = spec.attribution(spec.params(), None).reduce
    np.testing.assert_allclose(squared.heatmaps[0], reduce(per_channel), rtol=1e-6)


def test_noise_is_scaled_to_the_input_range_and_zero_noise_is_the_plain_method():
    w, classifier, x = linear_case()
    objective = Objective.for_classes([0], 3)
    result = explain_once(classifier, x, "smoothgrad", objective, {"samples": 3, "noise_level": 0.0,
                                                                   "inner": "input_x_gradient"})
    np.testing.assert_allclose(result.heatmaps[0], (x * w[0]).sum(0), rtol=1e-5, atol=1e-6)
    assert result.extras["sigma"] == 0
    result = explain_once(classifier, x, "smoothgrad", objective, {"samples": 3, "noise_level": 0.2})
    assert result.extras["sigma"] == pytest.approx(0.2 * (x.max() - x.min()))


def test_mean_over_a_quadratic_model_matches_the_expectation_within_monte_carlo_error():
    # logits[k] = (k + 1) · mean(q²) over the top-left quadrant q (N = 3·8·8 values), so with
    # x̃ = x + ε, ε ~ N(0, σ²): input × gradient = 2(k + 1)/N · x̃² there, whose mean is
    # 2(k + 1)/N · (x² + σ²) and variance (2(k + 1)/N)² · (4x²σ² + 2σ⁴); zero elsewhere.
    classifier = OnnxClassifier(builders.quadrant(size=16, classes=2))
    x = RNG.standard_normal((3, 16, 16)).astype(np.float32)
    samples, level = 4000, 0.15
    result = explain_once(classifier, x, "smoothgrad", Objective.for_classes([1], 2),
                          {"samples": samples, "noise_level": level, "inner": "input_x_gradient"}, seed=9)
    sigma, scale = level * (x.max() - x.min()), 2 * 2 / (3 * 8 * 8)
    q = x[:, :8, :8].astype(np.float64)
    expected = (scale * (q**2 + sigma**2)).sum(0)
    error = np.sqrt((scale**2 * (4 * q**2 * sigma**2 + 2 * sigma**4)).sum(0) / samples)
    heat = result.heatmaps[0]
    assert np.all(np.abs(heat[:8, :8] - expected) < 4.5 * error)
    assert abs(((heat[:8, :8] - expected) / error).mean()) < 4.5 / 8  # the mean of 64 near-independent z-scores
    np.testing.assert_array_equal(heat[8:], 0)
    np.testing.assert_array_equal(heat[:, 8:], 0)


def test_integrated_gradients_inside_smoothgrad_composes_and_counts_its_steps():
    w, classifier, x = linear_case(classes=2)
    planned, *_, result = explain(classifier, x, "smoothgrad", Objective.for_classes([1], 2),
                                  {"samples": 3, "noise_level": 0.0, "inner": "integrated_gradients"})
    # IG from the black baseline, which is 0 for a model without preprocessing config
    np.testing.assert_allclose(result.heatmaps[0], (x * w[1]).sum(0), rtol=1e-4, atol=1e-5)
    assert (result.forward, result.backward) == (3 * 50 + 1, 3 * 50) == (planned.forward, planned.backward)


@pytest.mark.parametrize("rule", ["trapezoid", "riemann_left"])
def test_the_wrapped_integrated_gradients_takes_its_steps_and_rule(rule):
    classifier = OnnxClassifier(builders.small_cnn())
    x = RNG.standard_normal((3, 16, 16)).astype(np.float32)
    objective = Objective.for_classes([1], 3)
    alone = explain_once(classifier, x, "integrated_gradients", objective, {"steps": 7, "rule": rule})
    planned, *_, wrapped = explain(classifier, x, "smoothgrad", objective, {
        "samples": 2, "noise_level": 0.0, "inner": "integrated_gradients", "ig_steps": 7, "ig_rule": rule})
    np.testing.assert_allclose(wrapped.heatmaps, alone.heatmaps, rtol=1e-5, atol=1e-6)
    assert (wrapped.forward, wrapped.backward) == (2 * 7 + 1, 2 * 7) == (planned.forward, planned.backward)


@pytest.mark.parametrize("inner", gradient_attributions())
def test_one_noiseless_sample_is_the_wrapped_method(inner):
    classifier = OnnxClassifier(builders.small_cnn())
    x = RNG.standard_normal((3, 16, 16)).astype(np.float32)
    objective = Objective.for_classes([0, 2], 3)
    alone = explain_once(classifier, x, inner, objective)
    wrapped = explain_once(classifier, x, "smoothgrad", objective, {"samples": 1, "noise_level": 0.0, "inner": inner})
    np.testing.assert_allclose(wrapped.heatmaps, alone.heatmaps, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(wrapped.scores, alone.scores, rtol=1e-6)


@pytest.mark.parametrize("inner", ["integrated_gradients", "deeplift"])
def test_wrapped_path_methods_reference_the_models_black_image_as_they_do_alone(inner):
    from onnxplain.explainers import ModelConfig, Preprocessing

    pre = Preprocessing(scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    classifier = OnnxClassifier(builders.small_cnn(), config=ModelConfig(preprocessing=pre))
    x = RNG.standard_normal((3, 16, 16)).astype(np.float32)
    objective = Objective.for_classes([0, 2], 3)
    alone = explain_once(classifier, x, inner, objective)
    planned, *_, wrapped = explain(classifier, x, "smoothgrad", objective,
                                   {"samples": 2, "noise_level": 0.0, "inner": inner})
    np.testing.assert_allclose(wrapped.heatmaps, alone.heatmaps, rtol=1e-4, atol=1e-5)
    zero = explain_once(classifier, x, inner, objective, {"baseline": "zero"})
    assert not np.allclose(wrapped.heatmaps, zero.heatmaps, atol=1e-3)  # black is not 0 for this model
    points = 2 * 2 * (50 if inner == "integrated_gradients" else 1)
    baseline_passes = points if inner == "deeplift" else 0
    assert (wrapped.forward, wrapped.backward) == (points + baseline_passes + 1, points)
    assert (planned.forward, planned.backward) == (wrapped.forward, wrapped.backward)


def test_different_seeds_draw_different_noise():
    classifier = OnnxClassifier(builders.small_cnn())
    x = RNG.standard_normal((3, 16, 16)).astype(np.float32)
    first, second = (explain_once(classifier, x, "smoothgrad", Objective.for_classes([0], 3), {"samples": 4}, seed=s)
                     for s in (1, 2))
    assert not np.allclose(first.heatmaps, second.heatmaps)


# ---------------------------------------------------------------- Captum
@pytest.fixture(scope="module")
def captum():
    return OnnxClassifier(onnx.load(FIXTURES / "captum_model.onnx")), np.load(FIXTURES / "captum_golden.npz")


@pytest.mark.parametrize("image", [0, 1])
@pytest.mark.parametrize("variant, key, inner, reduce", [
    ("mean", "nt_smoothgrad", "saliency", lambda a: a.max(0)),
    ("squared", "nt_smoothgrad_sq", "saliency", lambda a: a.max(0)),
    ("vargrad", "nt_vargrad", "saliency", lambda a: a.max(0)),
    ("mean", "nt_input_x_gradient", "input_x_gradient", lambda a: a.sum(0)),
])
def test_agrees_with_captums_noise_tunnel_given_the_same_noise(captum, image, variant, key, inner, reduce):
    classifier, golden = captum
    objective = Objective.for_classes([int(golden["targets"][image])], 5)
    params = {"samples": int(golden["nt_samples"]), "noise_level": float(golden["noise_level"]), "variant": variant,
              "inner": inner}
    result = explain_once(classifier, golden["x"][image], "smoothgrad", objective, params, seed=int(golden["nt_seed"]))
    expected = reduce(golden[key][image])
    np.testing.assert_allclose(result.heatmaps[0], expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("image", [0, 1])
def test_agrees_in_distribution_with_captums_own_noise(captum, image):
    classifier, golden = captum
    objective = Objective.for_classes([int(golden["targets"][image])], 5)
    result = explain_once(classifier, golden["x"][image], "smoothgrad", objective,
                          {"samples": int(golden["free_samples"]), "noise_level": float(golden["noise_level"])})
    ours, theirs = result.heatmaps[0].ravel(), golden["free_smoothgrad"][image].max(0).ravel()
    assert np.corrcoef(ours, theirs)[0, 1] > 0.995
    assert np.abs(ours - theirs).mean() < 0.03 * np.abs(theirs).mean()


# ---------------------------------------------------------------- parameters
@pytest.mark.parametrize("params, field", [
    ({"samples": 0}, "params.samples"),
    ({"noise_level": -0.1}, "params.noise_level"),
    ({"variant": "median"}, "params.variant"),
    ({"inner": "grad_cam"}, "params.inner"),
    ({"inner": "integrated_gradients", "ig_steps": 1}, "params.ig_steps"),
    ({"inner": "integrated_gradients", "ig_rule": "simpson"}, "params.ig_rule"),
    ({"ig_steps": 16}, "params.ig_steps"),  # saliency has no path
    ({"inner": "input_x_gradient", "ig_rule": "trapezoid"}, "params.ig_rule"),
])
def test_bad_parameters_are_rejected_by_name(params, field):
    w, classifier, x = linear_case()
    with pytest.raises(InvalidArgument) as info:
        explain_once(classifier, x, "smoothgrad", Objective.for_classes([0], 3), params)
    assert info.value.field == field
