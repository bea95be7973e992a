"""Extremal perturbation on analytic models, and its parts (mask family, area regulariser, Adam,
finite-difference gradients) against plain re-implementations."""

from __future__ import annotations

import builders
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnxplain.explainers import ModelConfig, Objective, OnnxClassifier, Planned, Progress, explain, explain_once
from onnxplain.explainers.autodiff import CLASS_WEIGHTS, INPUT_GRAD
from onnxplain.explainers.context import RunContext
from onnxplain.explainers.errors import FailedPrecondition, InvalidArgument
from onnxplain.explainers.model import Evaluator
from onnxplain.explainers.perturb.baselines import blur
from onnxplain.explainers.perturb.extremal import (
    Adam,
    SmoothMask,
    antithetic_gradient,
    area_ones,
    gradient_seed,
    multiscale_rademacher,
    ranking_penalty,
)

QUADRANT = OnnxClassifier(builders.quadrant(size=16))
# ±2 texture: blurring any pixel of it lowers x², so the quadrant model's best mask of area 1/4 is its quadrant
TEXTURE = 2 * np.random.default_rng(3).choice([-1.0, 1.0], size=(3, 16, 16)).astype(np.float32)
CLASS_1 = Objective.for_classes([1], 2)


def quadrant_share(heat: np.ndarray) -> float:
    return float(heat[:8, :8].sum() / heat.sum())


@pytest.mark.parametrize("gradient", ["exact", "finite_differences"])
def test_preservation_keeps_the_quadrant_the_model_looks_at(gradient):
    result = explain_once(QUADRANT, TEXTURE, "extremal_perturbation", CLASS_1,
                          {"areas": [0.25], "mask_step": 1, "iterations": 100, "gradient": gradient}, seed=1)
    assert result.extras["exact_gradient"] == float(gradient == "exact")
    assert quadrant_share(result.heatmaps[0]) > 0.8
    assert result.extras["score[a=0.25]"] > 0.6 * result.scores[0]  # most of the score is kept
    assert abs(result.extras["area[a=0.25]"] - 0.25) < 0.03


def test_deletion_removes_the_quadrant():
    result = explain_once(QUADRANT, TEXTURE, "extremal_perturbation", CLASS_1,
                          {"areas": [0.25], "mode": "deletion", "mask_step": 1, "iterations": 100})
    assert quadrant_share(result.heatmaps[0]) > 0.8  # the heatmap is the deleted region
    assert result.extras["score[a=0.25]"] < 0.5 * result.scores[0]


def test_the_area_regulariser_brings_each_mask_to_its_area():
    result = explain_once(QUADRANT, TEXTURE, "extremal_perturbation", CLASS_1,
                          {"areas": [0.1, 0.3, 0.5], "mask_step": 2, "iterations": 150})
    for area in (0.1, 0.3, 0.5):
        assert abs(result.extras[f"area[a={area:g}]"] - area) < 0.03
    # the heatmap sums the masks: nowhere above the number of areas, its mean the sum of the areas
    assert result.heatmaps.max() <= 3 + 1e-6 and abs(result.heatmaps.mean() - 0.9) < 0.06


@pytest.mark.parametrize("space, softmax, loss", [("output", False, "difference"), ("output", True, "difference"),
                                                  ("probability", False, "difference"),
                                                  ("output", False, "cross_entropy"), ("output", True, "cross_entropy")])
def test_exact_and_finite_difference_gradients_agree(space, softmax, loss):
    """The exact mask gradient (one gradient graph pass, its seed computed in the graph as gradient_seed
    says: the probabilities' Softmax kept, a softmax or log-softmax seed) against the black-box estimate
    with many directions, for objectives linear and not linear in the logits."""
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((3, 3, 12, 12)).astype(np.float32) * 0.3
    classifier = OnnxClassifier(builders.linear(weights, softmax=softmax))
    image = rng.standard_normal((3, 12, 12)).astype(np.float32)
    contrast = 1 if loss == "cross_entropy" else None
    objective = Objective.for_classes([0, 2], 3, space=space, contrast=contrast, loss=loss)
    smooth = SmoothMask.for_image(12, 12, 3)
    source, baseline = smooth.source(), blur(image, 0.1)
    points = rng.uniform(0.2, 0.8, size=(2, *smooth.low_shape))
    targets = np.array([0, 1])
    evaluator = Evaluator(classifier, RunContext())
    flat = points[:, None].astype(np.float32)
    cut = "Softmax" if softmax else None
    assert (classifier.signature.output_producer == "Softmax") == softmax  # what the method reads
    cut_final, seed = gradient_seed(objective, outputs_are_probabilities=classifier.outputs_are_probabilities, cut=cut)
    seeds = objective.weights[targets]
    context = evaluator.context
    before = (context.forward, context.backward)
    chunk, = evaluator.perturbation_gradients(
        2, lambda a, b: {"low_masks": flat[a:b], CLASS_WEIGHTS: seeds[a:b]}, source=source, wrt="low_masks",
        image=image, baseline=baseline, cut_final_activation=cut_final, score_seed=seed)
    assert (context.forward - before[0], context.backward - before[1]) == (2, 2)  # no pass to read outputs first
    exact = chunk.outputs[INPUT_GRAD][:, 0]

    def evaluate(probes):
        masks = np.ascontiguousarray(probes.reshape(-1, 1, *smooth.low_shape), dtype=np.float32)
        out = evaluator.perturbed(len(masks), lambda a, b: {"low_masks": masks[a:b]}, source=source, image=image,
                                  baseline=baseline)
        values = np.concatenate([objective(c.outputs[classifier.signature.output_name],
                                           outputs_are_probabilities=classifier.outputs_are_probabilities)
                                 for c in out])
        return values.reshape(2, -1, 2)[np.arange(2), :, targets]

    fine, weights = multiscale_rademacher(rng, 2, 400, smooth.low_shape, (1000,))
    np.testing.assert_array_equal(weights, 1.0)  # full-resolution Rademacher
    _, estimate = antithetic_gradient(evaluate, points, fine, step=0.05, weights=weights)
    for e, g in zip(exact, estimate):
        cosine = (e * g).sum() / np.linalg.norm(e) / np.linalg.norm(g)
        assert cosine > 0.95, cosine
    coarse, weights = multiscale_rademacher(rng, 2, 400, smooth.low_shape, (2, 4))
    _, estimate = antithetic_gradient(evaluate, points, coarse, step=0.05, weights=weights)
    for e, g in zip(exact, estimate):
        assert (e * g).sum() / np.linalg.norm(e) / np.linalg.norm(g) > 0.5  # a smoothed, still descending, gradient


def test_antithetic_estimate_is_exact_for_a_linear_function():
    rng = np.random.default_rng(1)
    slope = rng.standard_normal((2, 5, 4))
    points = rng.random((2, 5, 4))
    directions, _ = multiscale_rademacher(rng, 2, 20000, (5, 4), (1000,))
    values, grads = antithetic_gradient(lambda probes: np.einsum("nkhw,nhw->nk", probes, slope) + 3.0, points,
                                        directions, step=0.1)
    np.testing.assert_allclose(values, (points * slope).sum(axis=(1, 2)) + 3.0)
    np.testing.assert_allclose(grads, slope, atol=0.15)  # Monte-Carlo error only: O(1/sqrt(K))


def test_multiscale_directions_estimate_a_smooth_gradient_on_its_scale():
    """Weighted coarse directions keep a smooth gradient's size (the area term it is balanced
    against keeps its weight) and damp a checkerboard the coarse grids cannot represent."""
    rng = np.random.default_rng(7)
    directions, weights = multiscale_rademacher(rng, 1, 20000, (16, 16), (4, 8))
    smooth_slope = np.outer(np.hanning(16), np.hanning(16))[None]
    checker = (np.indices((16, 16)).sum(0) % 2 * 2.0 - 1)[None]
    for slope, low, high in ((smooth_slope, 0.6, 1.1), (checker, -0.1, 0.1)):
        _, grads = antithetic_gradient(lambda probes, s=slope: np.einsum("nkhw,nhw->nk", probes, s), np.zeros((1, 16, 16)),
                                       directions, step=0.1, weights=weights)
        gain = (grads * slope).sum() / (slope * slope).sum()
        assert low < gain < high, gain


def test_ranking_penalty_is_the_sorted_distance_to_the_reference():
    rng = np.random.default_rng(2)
    masks = np.round(rng.random((4, 30)) * 4) / 4  # many ties
    ones = np.array([0, 7, 15, 30])
    values, grads = ranking_penalty(masks, ones)
    for mask, k, value, grad in zip(masks, ones, values, grads):
        reference = np.r_[np.zeros(30 - k), np.ones(k)]
        assert np.isclose(value, ((np.sort(mask) - reference) ** 2).mean())
        # gradient: 2/N (m − r̄) where r̄ is the reference averaged over the ranks of tied values
        order = np.argsort(mask, kind="stable")
        by_rank = np.empty(30)
        by_rank[order] = reference
        for level in np.unique(mask):
            tied = mask == level
            np.testing.assert_allclose(grad[tied], 2 / 30 * (level - by_rank[tied].mean()))
    uniform, = ranking_penalty(np.full((1, 10), 0.7) + 1e-15 * rng.random((1, 10)), np.array([3]))[1]
    np.testing.assert_allclose(uniform, uniform[0])  # rounding noise does not pick pixels


def test_area_ones_and_smooth_masks():
    np.testing.assert_array_equal(area_ones((0.05, 0.5), 200), [10, 100])
    smooth = SmoothMask.for_image(20, 15, 4, 1.0)
    assert smooth.low_shape == (5, 4) and smooth.shape == (20, 15)
    np.testing.assert_allclose(smooth.masks(np.full((1, 5, 4), 0.3)), 0.3)  # constants survive
    p = np.random.default_rng(4).random((2, 5, 4))
    g = np.random.default_rng(5).random((2, 20, 15))
    # pull_back is the adjoint of masks: <masks(p), g> = <p, pull_back(g)>
    assert np.isclose((smooth.masks(p) * g).sum(), (p * smooth.pull_back(g)).sum())


def test_adam_minimises_within_the_box():
    params = np.array([[0.5, 0.5, 0.5]])
    adam = Adam(params, 0.05)
    target = np.array([[0.2, 1.5, -0.4]])
    for _ in range(300):
        adam.step(2 * (params - target))
    np.testing.assert_allclose(params, [[0.2, 1.0, 0.0]], atol=1e-3)


@pytest.mark.parametrize("gradient, space", [("exact", "output"), ("exact", "probability"),
                                             ("finite_differences", "output")])
def test_planned_passes_are_the_passes_used(gradient, space):
    objective = Objective.for_classes([0, 1], 2, space=space)
    events = list(explain(QUADRANT, TEXTURE, "extremal_perturbation", objective,
                          {"areas": [0.1, 0.2], "iterations": 6, "mask_step": 4, "gradient": gradient,
                           "directions": 3}))
    planned, final = events[0], events[-1]
    assert isinstance(planned, Planned)
    assert (final.forward, final.backward) == (planned.forward, planned.backward)
    # exact: one forward a mask, also for probabilities of a logits model (the softmax seed is computed in
    # the graph; it used to cost a forward to read the logits first)
    per_step = {"finite_differences": 2 * 3, "exact": 1}[gradient]
    assert final.forward == 6 * 4 * per_step + 4 + 1  # 2 areas x 2 targets, final masks, unperturbed
    assert final.backward == (6 * 4 if gradient == "exact" else 0)
    assert set(final.extras) == {"exact_gradient", "iterations"} | {
        f"{kind}[a={a},t={t}]" for kind in ("score", "area") for a in ("0.1", "0.2") for t in (0, 1)}
    assert all(isinstance(e, Progress) for e in events[1:-1])


def test_finite_differences_are_seeded_and_batch_size_invariant():
    def run(max_batch, seed):
        classifier = OnnxClassifier(builders.quadrant(size=16), config=ModelConfig(max_batch=max_batch))
        return explain_once(classifier, TEXTURE, "extremal_perturbation", CLASS_1,
                            {"areas": [0.2], "iterations": 5, "mask_step": 4, "gradient": "finite_differences",
                             "directions": 4}, seed=seed).heatmaps

    reference = run(8, 3)
    np.testing.assert_allclose(run(3, 3), reference, rtol=1e-5, atol=1e-6)
    assert not np.allclose(run(8, 4), reference)


def softsign_model() -> onnx.ModelProto:
    """A model with an op that has no gradient rule (Softsign): logits = mean over pixels of softsign(x)."""
    nodes = [helper.make_node("Softsign", ["x"], ["s"]),
             helper.make_node("ReduceMean", ["s"], ["logits"], axes=[2, 3], keepdims=0)]
    graph = helper.make_graph(nodes, "softsign", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_auto_falls_back_to_finite_differences_and_exact_fails_with_the_op_named():
    classifier = OnnxClassifier(softsign_model())
    image = np.random.default_rng(6).standard_normal((3, 8, 8)).astype(np.float32)
    objective = Objective.for_classes([0], 3)
    params = {"areas": [0.2], "iterations": 3, "mask_step": 4, "directions": 2}
    assert explain_once(classifier, image, "extremal_perturbation", objective, params).extras["exact_gradient"] == 0.0
    with pytest.raises(FailedPrecondition, match="Softsign"):
        explain_once(classifier, image, "extremal_perturbation", objective, {**params, "gradient": "exact"})


@pytest.mark.parametrize("params, field", [
    ({"areas": [0.1, 0.0]}, "params.areas[1]"),
    ({"areas": [1.0]}, "params.areas[0]"),
    ({"areas": [1.5]}, "params.areas[0]"),
    ({"areas": []}, "params.areas"),
    ({"areas": 0.1}, "params.areas"),
    ({"mode": "dual"}, "params.mode"),
    ({"gradient": "numerical"}, "params.gradient"),
    ({"iterations": 0}, "params.iterations"),
    ({"directions": 0}, "params.directions"),
    ({"mask_step": 0}, "params.mask_step"),
    ({"blur_sigma": 0.2}, "params.blur_sigma"),
    ({"learning_rate": 0.0}, "params.learning_rate"),
    ({"regularization_weight": -1.0}, "params.regularization_weight"),
    ({"step": 3}, "params.step"),
])
def test_bad_parameters_are_named(params, field):
    with pytest.raises(InvalidArgument) as info:
        explain_once(QUADRANT, TEXTURE, "extremal_perturbation", CLASS_1, params)
    assert info.value.field == field
