"""Occlusion on analytic models with known answers."""

from __future__ import annotations

import builders
import numpy as np
import pytest

from onnxplain.explainers import Objective, OnnxClassifier, explain_once
from onnxplain.explainers.errors import InvalidArgument
from onnxplain.explainers.perturb.baselines import make_baseline

RNG = np.random.default_rng(3)


def test_one_pixel_window_on_a_linear_model_is_w_times_x():
    w = RNG.standard_normal((3, 3, 12, 12)).astype(np.float32)
    classifier = OnnxClassifier(builders.linear(w, bias=np.array([0.5, -1, 2], np.float32)))
    x = RNG.standard_normal((3, 12, 12)).astype(np.float32)
    result = explain_once(classifier, x, "occlusion", Objective.for_classes([0, 2], 3), {"window": 1, "stride": 1})
    np.testing.assert_allclose(result.heatmaps[0], (w[0] * x).sum(0), atol=2e-5)
    np.testing.assert_allclose(result.heatmaps[1], (w[2] * x).sum(0), atol=2e-5)
    np.testing.assert_allclose(result.scores, [(w[0] * x).sum() + 0.5, (w[2] * x).sum() + 2], rtol=1e-5)
    assert result.forward == 12 * 12 + 1


def test_contrast_target_is_the_difference_of_the_two_classes():
    w = RNG.standard_normal((3, 3, 6, 6)).astype(np.float32)
    classifier = OnnxClassifier(builders.linear(w))
    x = RNG.standard_normal((3, 6, 6)).astype(np.float32)
    contrast = Objective.for_classes([1], 3, contrast=2)
    result = explain_once(classifier, x, "occlusion", contrast, {"window": 1, "stride": 1})
    np.testing.assert_allclose(result.heatmaps[0], ((w[1] - w[2]) * x).sum(0), atol=2e-5)


def test_larger_windows_average_the_drops_of_the_windows_covering_a_pixel():
    w = RNG.standard_normal((1, 1, 4, 4)).astype(np.float32)
    classifier = OnnxClassifier(builders.linear(w))
    x = RNG.standard_normal((1, 4, 4)).astype(np.float32)
    result = explain_once(classifier, x, "occlusion", Objective.for_classes([0], 1), {"window": 2, "stride": 1})
    contribution = (w[0] * x)[0]
    expected = np.zeros((4, 4))
    counts = np.zeros((4, 4))
    for top in range(4):
        for left in range(4):
            drop = contribution[top : top + 2, left : left + 2].sum()
            expected[top : top + 2, left : left + 2] += drop
            counts[top : top + 2, left : left + 2] += 1
    np.testing.assert_allclose(result.heatmaps[0], expected / counts, atol=2e-5)


def test_all_heat_falls_in_the_quadrant_the_model_looks_at():
    classifier = OnnxClassifier(builders.quadrant(size=16))
    x = RNG.standard_normal((3, 16, 16)).astype(np.float32) + 2.0
    result = explain_once(classifier, x, "occlusion", Objective.for_classes([1], 2), {"window": 4, "stride": 4})
    heat = result.heatmaps[0]
    assert np.all(heat[:8, :8] > 0)
    np.testing.assert_array_equal(heat[8:, :], 0)
    np.testing.assert_array_equal(heat[:, 8:], 0)


@pytest.mark.parametrize("kind", ["zero", "mean", "blur"])
def test_baselines(kind):
    x = RNG.standard_normal((3, 20, 30)).astype(np.float32) + np.arange(3, dtype=np.float32)[:, None, None]
    fill = make_baseline(x, kind)
    assert fill.shape == x.shape and fill.dtype == np.float32
    if kind == "zero":
        assert not fill.any()
    elif kind == "mean":
        np.testing.assert_allclose(fill[:, 0, 0], x.mean(axis=(1, 2)), rtol=1e-5)
    else:  # a blur keeps each channel's mean roughly and removes most of the variance
        np.testing.assert_allclose(fill.mean(axis=(1, 2)), x.mean(axis=(1, 2)), atol=0.05)
        assert fill.std(axis=(1, 2)).max() < 0.3 * x.std(axis=(1, 2)).min()


@pytest.mark.parametrize(
    "params, field",
    [
        ({"window": 0}, "params.window"),
        ({"stride": 20, "window": 16}, "params.stride"),
        ({"baseline": "noise"}, "params.baseline"),
        ({"window": "big"}, "params.window"),
        ({"windows": 3}, "params.windows"),
        ({"window": 64}, "params.window"),  # larger than the 12x12 input
    ],
)
def test_bad_parameters_name_the_parameter(params, field):
    classifier = OnnxClassifier(builders.linear(np.ones((1, 3, 12, 12), np.float32)))
    x = np.zeros((3, 12, 12), np.float32)
    with pytest.raises(InvalidArgument) as info:
        explain_once(classifier, x, "occlusion", Objective.for_classes([0], 1), params)
    assert info.value.field == field
