"""LIME: agreement with the ``lime`` package (golden file), analytic models, parameters."""

from __future__ import annotations

from pathlib import Path

import builders
import numpy as np
import pytest

from onnxplain.explainers import Objective, OnnxClassifier, explain, explain_once
from onnxplain.explainers.errors import InvalidArgument
from onnxplain.explainers.events import Progress
from onnxplain.explainers.perturb.baselines import make_baseline
from onnxplain.explainers.perturb.masks import superpixels as sp
from onnxplain.explainers.perturb.surrogate import WeightedRidge, exponential_kernel, fit_weighted_ridge

GOLDEN = Path(__file__).parent / "fixtures" / "lime_golden.npz"  # tools/fixtures/golden_lime.py
RNG = np.random.default_rng(5)


def smooth_image(channels: int = 3, size: int = 16) -> np.ndarray:
    """Colour blobs plus a little noise: SLIC has structure to follow."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    waves = [np.sin(5 * xx + c) + np.cos(4 * yy - 2 * c) for c in range(channels)]
    return (np.stack(waves) + 0.1 * RNG.standard_normal((channels, size, size))).astype(np.float32)


def test_surrogate_fit_agrees_with_the_lime_package():
    golden = np.load(GOLDEN)
    data, labels = golden["data"], golden["labels"]
    weights = exponential_kernel(sp.cosine_distance_to_all_on(data.astype(bool)), float(golden["kernel_width"]))
    np.testing.assert_allclose(weights, golden["weights"], rtol=1e-12)
    fit = fit_weighted_ridge(data, labels, weights, float(golden["alpha"]))
    np.testing.assert_allclose(fit.coef, golden["coef"], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(fit.intercept, golden["intercept"], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(fit.r2, golden["score"], rtol=1e-8)
    assert 0.5 < golden["score"].min() < golden["score"].max() < 0.99  # a fit that is informative, not exact


def test_segment_mean_baseline_agrees_with_the_lime_package():
    golden = np.load(GOLDEN)
    image = np.moveaxis(golden["image"] / 255.0, -1, 0)
    fudged = sp.segment_mean(image, golden["segments"].astype(np.int64))
    np.testing.assert_allclose(fudged, np.moveaxis(golden["fudged"], -1, 0), rtol=1e-6)


def test_streamed_moments_equal_a_one_shot_fit():
    z = RNG.integers(0, 2, (90, 7))
    y = z @ RNG.standard_normal((7, 2)) + 0.3 * RNG.standard_normal((90, 2)) + 10.0
    w = RNG.random(90)
    ridge = WeightedRidge(7, 2)
    for start in range(0, 90, 13):
        ridge.add(z[start : start + 13], y[start : start + 13], w[start : start + 13])
    streamed, once = ridge.fit(0.5), fit_weighted_ridge(z, y, w, 0.5)
    for a, b in [(streamed.coef, once.coef), (streamed.intercept, once.intercept), (streamed.r2, once.r2)]:
        np.testing.assert_allclose(a, b, rtol=1e-9)


@pytest.mark.parametrize("samples, alpha", [(60, 1.0), (60, 0.0), (5, 0.0), (5, 1e-3)])
def test_surrogate_is_scikit_learns_weighted_ridge(samples, alpha):
    from sklearn.linear_model import Ridge

    z = RNG.integers(0, 2, (samples, 9))
    y = np.tanh(z @ RNG.standard_normal((9, 3))) + 5.0
    w = RNG.random(samples)
    fit = fit_weighted_ridge(z, y, w, alpha)
    for t in range(3):  # fewer samples than features with α = 0: both give the minimum-norm solution
        ridge = Ridge(alpha=alpha, solver="svd").fit(z, y[:, t], sample_weight=w)
        np.testing.assert_allclose(fit.coef[t], ridge.coef_, rtol=1e-7, atol=1e-9)
        assert fit.intercept[t] == pytest.approx(ridge.intercept_, rel=1e-9)
        assert fit.r2[t] == pytest.approx(ridge.score(z, y[:, t], sample_weight=w), rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("baseline", ["segment_mean", "zero"])
@pytest.mark.parametrize("channels", [3, 1])
def test_linear_model_coefficients_are_segment_sums_of_w_times_x_minus_baseline(baseline, channels):
    w = RNG.standard_normal((2, channels, 16, 16)).astype(np.float32)
    bias = np.array([0.5, -1.0], np.float32)
    classifier = OnnxClassifier(builders.linear(w, bias=bias))
    x = smooth_image(channels)
    params = {"segments": 10, "samples": 150, "ridge_alpha": 1e-6, "baseline": baseline}
    result = explain_once(classifier, x, "lime", Objective.for_classes([0, 1], 2), params, seed=1)

    segments = sp.slic_segments(x, 10, 10.0)
    fill = sp.segment_mean(x, segments) if baseline == "segment_mean" else make_baseline(x, baseline)
    for t in range(2):
        contribution = (w[t] * (x - fill)).sum(0)
        sums = np.bincount(segments.ravel(), weights=contribution.ravel())
        np.testing.assert_allclose(result.heatmaps[t], sums[segments], rtol=1e-5, atol=1e-4)
        assert result.extras[f"r2[{t}]"] == pytest.approx(1.0, abs=1e-6)
        assert result.extras[f"intercept[{t}]"] == pytest.approx((w[t] * fill).sum() + bias[t], rel=1e-4, abs=1e-4)
    np.testing.assert_allclose(result.scores, [(w[t] * x).sum() + bias[t] for t in range(2)], rtol=1e-5)
    assert result.extras["r2"] == result.extras["r2[0]"] and result.extras["intercept"] == result.extras["intercept[0]"]
    assert result.extras["segments"] == segments.max() + 1 and result.extras["slic_seconds"] >= 0
    assert result.forward == 150
    assert result.extras["bytes_per_sample"] == 4 * (segments.max() + 1)  # only the on/off vector travels


@pytest.mark.parametrize("sampling", ["random", "quasi_random"])
def test_a_convergence_tolerance_stops_early_with_the_full_budgets_coefficients(sampling):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16] / 16
    x = np.stack([np.sin(5 * xx + c) + np.cos(4 * yy - 2 * c) for c in range(3)]) + 0.1 * rng.standard_normal((3, 16, 16))
    x, w = x.astype(np.float32), rng.standard_normal((1, 3, 16, 16)).astype(np.float32)
    classifier, objective = OnnxClassifier(builders.linear(w), config=_config(max_batch=16)), Objective.for_classes([0], 1)
    base = {"segments": 10, "samples": 1000, "sampling": sampling}  # ridge α = 1: fits move as samples grow
    full = explain_once(classifier, x, "lime", objective, base, seed=2)
    fast = explain_once(classifier, x, "lime", objective, {**base, "convergence_tolerance": 0.02}, seed=2)
    step = max(int(full.extras["segments"]) + 1, 50)
    used = fast.extras["samples_used"]
    assert used <= 500 and used % step == 0 and fast.extras["coefficient_change"] < 0.02
    assert used <= fast.forward < used + 16  # the batch in flight at the stop is scored, not fitted
    assert full.extras["samples_used"] == full.forward == 1000 and "coefficient_change" not in full.extras
    difference = np.linalg.norm(fast.heatmaps - full.heatmaps) / np.linalg.norm(full.heatmaps)
    assert difference < 0.02  # the change since half the samples bounds the distance to the full budget's fit


def test_quasi_random_samples_are_balanced_fair_coins_with_the_image_first():
    on = sp.sample_on_off(np.random.default_rng(0), 256, 12, "quasi_random")
    assert on.shape == (256, 12) and on[0].all()
    np.testing.assert_allclose(on[1:].mean(axis=0), 0.5, atol=2 / 256)  # Sobol: exactly half of 256, bar row 0
    assert not np.array_equal(on, sp.sample_on_off(np.random.default_rng(1), 256, 12, "quasi_random"))  # scrambled


def _config(**kwargs):
    from onnxplain.explainers import ModelConfig

    return ModelConfig(**kwargs)


@pytest.mark.parametrize("baseline", ["segment_mean", "zero"])
def test_all_heat_falls_in_the_quadrant_the_model_looks_at(baseline):
    classifier = OnnxClassifier(builders.quadrant(size=32))
    colours = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], np.float32).T.reshape(3, 2, 2) * 2 - 1
    x = np.kron(colours, np.ones((16, 16), np.float32)) + 0.05 * RNG.standard_normal((3, 32, 32)).astype(np.float32)
    segments = sp.slic_segments(x, 16, 10.0)
    outside = set(np.unique(segments[16:])) | set(np.unique(segments[:, 16:]))
    assert not set(np.unique(segments[:16, :16])) & outside  # SLIC follows the quadrants' colours
    objective = Objective.for_classes([1], 2)
    # a superpixel's effect is the sum of x² − fill² over its pixels (> 0); the model is additive over
    # superpixels, so least squares puts exactly nothing outside; ridge shrinkage leaks a little
    for alpha, leak, r2 in [(1e-6, 1e-4, 0.99999), (1.0, 0.05, 0.99)]:
        params = {"segments": 16, "samples": 200, "baseline": baseline, "ridge_alpha": alpha}
        result = explain_once(classifier, x, "lime", objective, params, seed=2)
        heat = result.heatmaps[0]
        assert np.all(heat[:16, :16] > 0)
        assert np.abs(heat[16:, :]).max() < leak * heat[:16, :16].min()
        assert np.abs(heat[:, 16:]).max() < leak * heat[:16, :16].min()
        assert result.extras["r2"] > r2


def test_partial_heatmaps_stream_while_samples_arrive():
    from onnxplain.explainers import ModelConfig

    classifier = OnnxClassifier(builders.small_cnn(), config=ModelConfig(max_batch=16))
    events = list(explain(classifier, smooth_image(), "lime", Objective.for_classes([0], 3),
                          {"segments": 8, "samples": 100}))
    partial = [e for e in events if isinstance(e, Progress) and e.heatmaps is not None]
    assert len(partial) >= 3 and partial[0].done < 100
    assert not np.allclose(partial[0].heatmaps, events[-1].heatmaps)


@pytest.mark.parametrize(
    "params, field",
    [
        ({"segments": 1}, "params.segments"),
        ({"samples": 5}, "params.samples"),
        ({"kernel_width": 0}, "params.kernel_width"),
        ({"ridge_alpha": -1}, "params.ridge_alpha"),
        ({"compactness": 0}, "params.compactness"),
        ({"baseline": "noise"}, "params.baseline"),
        ({"segments": "many"}, "params.segments"),
        ({"n_segments": 50}, "params.n_segments"),
    ],
)
def test_bad_parameters_name_the_parameter(params, field):
    classifier = OnnxClassifier(builders.linear(np.ones((1, 3, 12, 12), np.float32)))
    with pytest.raises(InvalidArgument) as info:
        explain_once(classifier, np.zeros((3, 12, 12), np.float32), "lime", Objective.for_classes([0], 1), params)
    assert info.value.field == field
