"""Sanity checks (Adebayo et al. 2018) and input-shift invariance (Kindermans et al. 2019): the graph
rewrites they rest on, the similarity measures, and the papers' findings on real exported models."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import builders
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from skimage import data, transform

import onnxplain.explainers.metrics.randomisation  # noqa: F401  (registers sanity_cascading, sanity_independent)
import onnxplain.explainers.metrics.shift_invariance  # noqa: F401  (registers input_shift_invariance)
from onnxplain.explainers import (
    Explanation,
    Objective,
    OnnxClassifier,
    Progress,
    RunContext,
    evaluate,
    evaluate_once,
    explain_once,
)
from onnxplain.explainers.errors import Cancelled, InvalidArgument, NotFound
from onnxplain.explainers.graph.input_shift import COMPENSATION_NODE, shift_compensated
from onnxplain.explainers.graph.randomise import parametrised_layers, randomised, spread
from onnxplain.explainers.metrics import get_metric
from onnxplain.explainers.metrics.shift_invariance import relative_change
from onnxplain.explainers.metrics.similarity import hog_similarity, similarities, ssim

FIXTURES = Path(__file__).parent / "fixtures"


def initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def layers_of(classifier: OnnxClassifier):
    return parametrised_layers(classifier.model, classifier.signature.input_name, classifier.signature.output_name)


def photo(classifier: OnnxClassifier) -> np.ndarray:
    """skimage's coffee at the model's size, standardised, canonical [C, H, W]."""
    image = transform.resize(data.coffee(), (classifier.height, classifier.width), anti_aliasing=True)
    return ((image - 0.45) / 0.25).transpose(2, 0, 1).astype(np.float32)


# ---------------------------------------------------------------- randomisation rewrite
def test_parametrised_layers_of_a_small_cnn_are_its_conv_and_gemm_with_weights_and_biases():
    model = OnnxClassifier(builders.small_cnn()).model
    layers = parametrised_layers(model, "x", "logits")
    assert [(layer.op_type, layer.tensors) for layer in layers] == [("Conv", ("cw", "cb")), ("Gemm", ("fw", "fb"))]


@pytest.mark.parametrize("fixture, op, tensors", [
    ("tf_style_nhwc", "MatMul", ("dense_w", "dense_b")),  # MatMul + Add of an exported Dense layer
    ("densenet_legacy", "BatchNormalization", ("features.4.denselayer1.norm1.weight",
                                               "features.4.denselayer1.norm1.bias")),  # γ, β; not mean/var
])
def test_parametrised_layers_find_matmul_biases_and_batchnorm_affine_parameters(fixture, op, tensors):
    classifier = OnnxClassifier.load(FIXTURES / f"{fixture}.onnx")
    assert tensors in [layer.tensors for layer in layers_of(classifier) if layer.op_type == op]


def test_randomised_changes_exactly_the_chosen_initializers_and_keeps_the_graph_valid():
    model = OnnxClassifier(builders.small_cnn(hidden=64)).model
    top = parametrised_layers(model, "x", "logits")[-1:]  # the Gemm
    rewritten = randomised(model, top, seed=3)
    onnx.checker.check_model(rewritten, full_check=True)
    before, after = initializers(model), initializers(rewritten)
    assert before.keys() == after.keys()
    changed = {name for name in before if not np.array_equal(before[name], after[name])}
    assert changed == {"fw", "fb"}
    assert list(rewritten.graph.node) == list(model.graph.node)
    for name in changed:  # the re-initialisation matches each tensor's own scale
        assert after[name].dtype == before[name].dtype and after[name].shape == before[name].shape
    w, fresh = before["fw"].astype(np.float64), after["fw"].astype(np.float64)
    assert abs(fresh.std() / w.std() - 1) < 0.3 and abs(fresh.mean() - w.mean()) < w.std()


def test_randomisation_is_seeded_deterministic_and_each_tensor_draws_the_same_values_in_every_cascade_step():
    model = OnnxClassifier(builders.small_cnn()).model
    layers = parametrised_layers(model, "x", "logits")
    assert randomised(model, layers, seed=5).SerializeToString() == randomised(model, layers, seed=5).SerializeToString()
    assert not np.array_equal(initializers(randomised(model, layers, seed=5))["cw"],
                              initializers(randomised(model, layers, seed=6))["cw"])
    top_only, both = initializers(randomised(model, layers[1:], seed=5)), initializers(randomised(model, layers, seed=5))
    np.testing.assert_array_equal(top_only["fw"], both["fw"])  # step k + 1 = step k plus one more layer
    np.testing.assert_array_equal(top_only["cw"], initializers(model)["cw"])


def test_spread_spaces_steps_evenly_and_always_ends_at_the_last_layer():
    assert spread(10, 4) == [0, 3, 6, 9]
    assert spread(3, 8) == [0, 1, 2]
    assert spread(50, 1) == [49]


# ---------------------------------------------------------------- input-shift rewrite
def unpadded_cnn(group: int = 1) -> onnx.ModelProto:
    """Conv 3×3 (no padding, ``group``) → Relu → GlobalAveragePool → Flatten → Gemm, on 4 channels."""
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("Conv", ["x", "cw"], ["conv"], kernel_shape=[3, 3], group=group),  # no bias: one is added
        helper.make_node("Relu", ["conv"], ["act"]),
        helper.make_node("GlobalAveragePool", ["act"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fw", "fb"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "unpadded", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4, 12, 12])],
        [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(rng.standard_normal((8, 4 // group, 3, 3)).astype(np.float32), "cw"),
         numpy_helper.from_array(rng.standard_normal((3, 8)).astype(np.float32), "fw"),
         numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "fb")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("model, folded", [
    (builders.small_cnn(size=12, channels=4), False),  # zero padding: the border is not shifted → a Sub node
    (unpadded_cnn(), True),  # folded into the conv's (new) bias
    (unpadded_cnn(group=2), True),
    (builders.linear(np.random.default_rng(0).standard_normal((3, 4, 12, 12)).astype(np.float32)), True),  # Gemm
    (builders.linear(np.random.default_rng(0).standard_normal((3, 4, 12, 12)).astype(np.float32), layout="NHWC"),
     False),
], ids=["padded_conv", "unpadded_conv", "grouped_conv", "reshape_gemm", "nhwc_transpose"])
def test_shift_compensated_model_gives_the_shifted_input_the_original_outputs(model, folded):
    classifier = OnnxClassifier(model)
    c = np.array([0.7, -1.3, 2.0, 0.25])
    rewrite = shift_compensated(classifier.model, classifier.signature.input_name, c, layout=classifier.signature.layout)
    onnx.checker.check_model(rewrite.model, full_check=True)
    assert rewrite.folded == folded and (rewrite.layer == COMPENSATION_NODE) != folded
    shifted = classifier.derived(rewrite.model, name="shifted")
    x = np.random.default_rng(4).standard_normal((3, 4, 12, 12)).astype(np.float32)
    before = classifier.predict(x)
    np.testing.assert_allclose(shifted.predict(x + c.astype(np.float32)[:, None, None]), before,
                               rtol=1e-5, atol=1e-5 * np.abs(before).max())
    assert np.abs(shifted.predict(x) - before).max() > 1e-2  # the unshifted input no longer gives them


# ---------------------------------------------------------------- similarity measures
def test_similarities_are_one_for_identical_maps_and_respect_sign_and_magnitude():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1, 32, 32)).astype(np.float32)
    same, _ = similarities(a, a)
    assert all(abs(float(v[0]) - 1) < 1e-6 for v in same.values())
    flipped, _ = similarities(a, -a)  # the sign is lost with |·| but not without it
    assert flipped["spearman"][0] == pytest.approx(-1) and flipped["spearman_abs"][0] == pytest.approx(1)
    unrelated, _ = similarities(a, rng.standard_normal((1, 32, 32)).astype(np.float32))
    assert abs(unrelated["spearman"][0]) < 0.15 and unrelated["ssim"][0] < 0.3


def test_a_constant_map_has_no_similarity_and_is_counted():
    a = np.random.default_rng(0).standard_normal((2, 16, 16)).astype(np.float32)
    other = a.copy()
    other[1] = 0.5
    measured, constant = similarities(a, other)
    assert constant == 1 and measured["spearman"][1] == 0 and measured["hog"][1] == 0 and measured["ssim"][1] == 0
    assert ssim(other[1], other[1]) == 0  # two constant maps are not "identical" explanations
    assert np.isfinite(ssim(a[0], other[1])) and hog_similarity(a[0], a[0]) == pytest.approx(1)


def test_relative_change_is_zero_for_equal_maps_one_for_opposite_maps_and_zero_for_two_zero_maps():
    a = np.random.default_rng(0).standard_normal((3, 4, 4)).astype(np.float32)
    b = np.stack([a[0], -a[1], np.zeros_like(a[2])])
    np.testing.assert_allclose(relative_change(a, b), [0, 1, 1], atol=1e-6)
    assert relative_change(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)))[0] == 0


# ---------------------------------------------------------------- parameters
@pytest.mark.parametrize("metric, params, field", [
    ("sanity_cascading", {"steps": 0}, "steps"),
    ("sanity_independent", {"stepz": 3}, "stepz"),
    ("input_shift_invariance", {"shift": [0.0, 0.0]}, "shift"),
    ("input_shift_invariance", {"tolerance": -1.0}, "tolerance"),
])
def test_bad_parameters_are_rejected_with_the_parameter_named(metric, params, field):
    with pytest.raises(InvalidArgument) as error:
        get_metric(metric).params.from_mapping(params)
    assert field in error.value.field


def test_a_shift_with_the_wrong_number_of_channels_is_rejected_before_any_model_evaluation():
    classifier = OnnxClassifier(builders.small_cnn())
    objective = Objective.for_classes([0], 3)
    with pytest.raises(InvalidArgument, match="1 or 3") as error:
        evaluate_once(classifier, np.zeros((3, 16, 16), np.float32), "saliency", objective, None,
                      {"input_shift_invariance": {"shift": [1.0, 2.0]}})
    assert error.value.field == "metrics.input_shift_invariance.shift"


def test_an_unknown_layer_name_is_rejected_before_any_model_evaluation_and_the_layers_are_listed():
    classifier, context = OnnxClassifier(builders.small_cnn()), RunContext()
    with pytest.raises(InvalidArgument, match="allowed: logits, conv") as error:
        evaluate_once(classifier, np.zeros((3, 16, 16), np.float32), "saliency", Objective.for_classes([0], 3), None,
                      {"sanity_independent": {"layers": "logits, nope"}}, context=context)
    assert error.value.field == "metrics.sanity_independent.layers" and context.forward == 0


def test_unknown_metric_lists_the_sanity_metrics():
    with pytest.raises(NotFound, match="sanity_cascading"):
        get_metric("sanity_cascade")


def test_a_cancelled_request_stops_between_randomisation_steps(monkeypatch):
    classifier = OnnxClassifier(builders.small_cnn())
    context, built = RunContext(), []
    make = OnnxClassifier.derived
    monkeypatch.setattr(OnnxClassifier, "derived", lambda self, *a, **k: built.append(1) or make(self, *a, **k))
    events = evaluate(classifier, np.ones((3, 16, 16), np.float32), "saliency", Objective.for_classes([0], 3), None,
                      {"sanity_cascading": {"steps": 2}}, context=context)
    with pytest.raises(Cancelled):
        for event in events:
            if isinstance(event, Progress) and built:  # the first step is done
                context.cancel()
    assert len(built) == 1


# ---------------------------------------------------------------- the papers' findings
def cascade(classifier, image, method, **params):
    objective = Objective.for_classes([int(np.argmax(classifier.predict(image[None])[0]))], classifier.num_classes)
    _, results = evaluate_once(classifier, image, method, objective, None, {"sanity_cascading": params})
    return results["sanity_cascading"]


def test_cascading_randomisation_on_a_small_cnn_decorrelates_gradients_and_grad_cam_but_not_guided_backprop():
    """Adebayo et al. Fig. 2 on the VGG-style fixture: guided backprop's map survives the cascade
    (it recovers the image's edges), gradients and Grad-CAM do not. The ordering, not the numbers."""
    classifier = OnnxClassifier.load(FIXTURES / "vgg_legacy.onnx")
    image = photo(classifier)
    results = {method: cascade(classifier, image, method, steps=3)
               for method in ("saliency", "grad_cam", "guided_backprop")}
    for result in results.values():
        assert result.metric == "sanity_cascading" and not result.higher_is_better
        assert [c.name for c in result.curves] == ["spearman", "spearman_abs", "ssim", "hog"]
        assert result.curves[0].x.tolist() == [1, 4, 7] and result.curves[0].x_ticks[-1] == layers_of(classifier)[0].name
        assert result.values[0] == result.curves[1].y[0, -1]  # the headline is the final step's Spearman |·|
    survival = {method: r.extras["mean_spearman_abs"] for method, r in results.items()}
    assert survival["guided_backprop"] > survival["saliency"] and survival["guided_backprop"] > survival["grad_cam"]
    assert results["guided_backprop"].curves[1].y[0, 0] > results["saliency"].curves[1].y[0, 0]  # logits alone


def test_independent_randomisation_reports_one_step_per_chosen_layer_by_name_and_releases_its_classifiers(
        monkeypatch):
    classifier = OnnxClassifier.load(FIXTURES / "vgg_legacy.onnx")
    image = photo(classifier)
    objective = Objective.for_classes([0], classifier.num_classes)
    explain_once(classifier, image, "saliency", objective)  # the request's own variants, compiled once
    pool_before = classifier.sessions.stats()
    derived, make = [], OnnxClassifier.derived
    monkeypatch.setattr(OnnxClassifier, "derived", lambda self, *a, **k: derived.append(weakref.ref(
        made := make(self, *a, **k))) or made)
    events = list(evaluate(classifier, image, "saliency", objective, None, {"sanity_independent": {"steps": 2}}))
    planned, result = events[0], events[-1]
    (explanation,) = [event for event in events if isinstance(event, Explanation)]
    names = [layer.name for layer in layers_of(classifier)]
    assert result.curves[0].x_ticks == (names[-1], names[0])  # top-down: the logits layer, then the first conv
    np.testing.assert_allclose(result.values, result.curves[1].y.mean(axis=1), rtol=1e-6)
    assert (result.forward, result.backward) == (2 * explanation.forward, 2 * explanation.backward) != (0, 0)
    assert planned.total == 3 * (explanation.forward + explanation.backward)  # the plan was exact
    gc.collect()
    assert len(derived) == 2 and all(ref() is None for ref in derived)  # each step's classifier is gone
    assert classifier.sessions.stats().builds == pool_before.builds  # nothing compiled into the request's pool


def test_input_shift_invariance_fails_for_integrated_gradients_with_a_black_baseline_and_passes_for_saliency():
    """Kindermans et al.: the gradient moves with the data; IG's fixed baseline does not."""
    classifier = OnnxClassifier(builders.small_cnn(size=16, hidden=8, seed=1))
    image = photo(classifier)
    objective = Objective.for_classes([0], 3)
    values = {}
    for method, params in [("saliency", {}), ("integrated_gradients", {"baseline": "zero", "steps": 16})]:
        _, results = evaluate_once(classifier, image, method, objective, params, {"input_shift_invariance": {}})
        values[method] = results["input_shift_invariance"]
    assert values["saliency"].values[0] < 1e-4 and values["saliency"].extras["spearman"] > 0.999
    assert values["integrated_gradients"].values[0] > 100 * max(values["saliency"].values[0], 1e-4)
    assert values["saliency"].extras["compensation_in_bias"] == 0  # padded conv: a Sub node
    assert values["saliency"].extras["max_score_change"] < 1e-4


@pytest.fixture(scope="module")
def bundled_coffee(bundled):
    image, _ = bundled.preprocess(builders.png(data.coffee()))
    return bundled, image


def test_bundled_model_guided_backprop_survives_the_top_of_the_cascade_and_saliency_and_grad_cam_do_not(
        bundled_coffee):
    """Randomised from the logits down to block 9 of 16 (19 of 50 layers): the ordering of Adebayo et al."""
    classifier, image = bundled_coffee
    middle = "/_blocks.9/_project_conv/Conv"
    results = {method: cascade(classifier, image, method, layers=middle)
               for method in ("guided_backprop", "saliency", "grad_cam")}
    gbp = results["guided_backprop"]
    assert gbp.extras["layers"] == 50 and gbp.curves[0].x_ticks == (middle,) and gbp.extras["steps"] == 1
    assert gbp.values[0] > results["saliency"].values[0] and gbp.values[0] > results["grad_cam"].values[0]
