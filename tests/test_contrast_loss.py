"""contrast_loss=cross_entropy (Prabhushankar et al. 2020): the seed softmax(y) − e_Q computed in the gradient
graph, the same value black-box, every gradient method and CAM, and the errors where it has no meaning."""

from __future__ import annotations

import builders
import numpy as np
import pytest
from onnx import TensorProto, helper
from scipy.special import logsumexp
from skimage import data

from onnxplain.explainers import Evaluator, Family, Objective, OnnxClassifier, explain_once, list_methods
from onnxplain.explainers.errors import FailedPrecondition, InvalidArgument
from onnxplain.explainers.model import decode_image, preprocess
from onnxplain.explainers.objectives import softmax

RNG = np.random.default_rng(11)
P, Q = 0, 2
# methods whose heatmap reads gradients at x only: with the cross-entropy they must equal the same method
# seeded by the fixed row softmax(y(x)) − e_Q
AT_THE_INPUT = ("saliency", "input_x_gradient", "guided_backprop", "deconvnet", "grad_cam", "guided_grad_cam",
                "grad_cam_plus_plus", "fullgrad", "cam")


def cross_entropy(classes=(P,), contrast=Q, num_classes=3) -> Objective:
    return Objective.for_classes(list(classes), num_classes, contrast=contrast, loss="cross_entropy")


def linear_case(softmax_head: bool):
    w = (RNG.standard_normal((3, 3, 6, 5)) * 0.1).astype(np.float32)  # logits of order 1: no saturated softmax
    bias = np.array([0.5, -1.0, 2.0], np.float32)
    x = RNG.standard_normal((3, 6, 5)).astype(np.float32)
    return OnnxClassifier(builders.linear(w, bias=bias, softmax=softmax_head)), w, bias, x


@pytest.mark.parametrize("softmax_head", [False, True])
def test_linear_model_input_gradient_is_w_transposed_times_softmax_minus_e_q(softmax_head):
    classifier, w, bias, x = linear_case(softmax_head)
    logits = np.einsum("kchw,chw->k", w.astype(np.float64), x) + bias
    seed = softmax(logits) - np.eye(3)[Q]
    (batch,) = Evaluator(classifier).gradients(1, lambda a, b: x[None], cross_entropy(classes=(P, 1)))
    expected = np.einsum("k,kchw->chw", seed, w)
    for t in range(2):  # the seed does not depend on P: both targets get the loss's gradient
        np.testing.assert_allclose(batch.input_grad[0, t], expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(batch.scores[0], logsumexp(logits) - logits[Q], rtol=1e-5)


@pytest.mark.parametrize("probabilities", [False, True])
def test_black_box_value_is_logsumexp_minus_the_contrast_logit(probabilities):
    logits = RNG.standard_normal((4, 5)) * 3
    outputs = softmax(logits) if probabilities else logits
    objective = cross_entropy(classes=(1, 3), contrast=4, num_classes=5)
    values = objective(outputs, outputs_are_probabilities=probabilities)
    expected = logsumexp(logits, axis=1) - logits[:, 4]
    np.testing.assert_allclose(values, np.stack([expected, expected], axis=1), rtol=1e-5)
    assert objective.weights.tolist() == [[0, 0, 0, 0, -1]] * 2 and objective.classes == (1, 3)


def test_a_vanishing_contrast_probability_gives_a_finite_loss():
    value = cross_entropy()(np.array([[1.0, 0.0, 0.0]]), outputs_are_probabilities=True)
    assert np.isfinite(value).all() and 87 < value[0, 0] < 88  # −log of float32's smallest normal


def gradient_methods():
    return sorted(s.name for s in list_methods() if s.family == Family.GRADIENT and s.name != "deeplift")


def test_every_gradient_method_at_the_input_is_listed():
    assert set(AT_THE_INPUT) <= set(gradient_methods())


@pytest.mark.parametrize("method", gradient_methods())
def test_every_gradient_method_and_cam_explains_the_cross_entropy(method):
    classifier = OnnxClassifier(builders.small_cnn(size=8))
    x = RNG.standard_normal((3, 8, 8)).astype(np.float32)
    objective = cross_entropy()
    logits = classifier.predict(x[None])[0].astype(np.float64)
    result = explain_once(classifier, x, method, objective, seed=3)
    np.testing.assert_allclose(result.scores, [logsumexp(logits) - logits[Q]], rtol=1e-5)
    difference = explain_once(classifier, x, method, Objective.for_classes([P], 3, contrast=Q), seed=3)
    assert not np.allclose(result.heatmaps, difference.heatmaps, rtol=1e-3, atol=1e-6)
    if method in AT_THE_INPUT:  # exactly the map of the fixed seed softmax(y) − e_Q
        seeded = Objective((softmax(logits) - np.eye(3)[Q]).astype(np.float32)[None], (P,))
        fixed = explain_once(classifier, x, method, seeded, seed=3)
        np.testing.assert_allclose(result.heatmaps, fixed.heatmaps, rtol=2e-4, atol=1e-6)


def test_integrated_gradients_completeness_holds_for_the_loss():
    classifier = OnnxClassifier(builders.small_cnn(size=8))
    x = RNG.standard_normal((3, 8, 8)).astype(np.float32)
    result = explain_once(classifier, x, "integrated_gradients", cross_entropy(), {"steps": 64})
    assert abs(result.extras["completeness_gap_relative"]) < 0.02


def test_deeplift_refuses_the_cross_entropy():
    classifier = OnnxClassifier(builders.small_cnn(size=8))
    x = RNG.standard_normal((3, 8, 8)).astype(np.float32)
    with pytest.raises(FailedPrecondition, match="contrast_loss=cross_entropy"):
        explain_once(classifier, x, "deeplift", cross_entropy())


def test_bad_values_are_named_with_the_choices():
    with pytest.raises(InvalidArgument, match="choices: difference, cross_entropy") as info:
        Objective.for_classes([0], 3, contrast=1, loss="hinge")
    assert info.value.field == "target.contrast_loss"
    with pytest.raises(InvalidArgument, match="set target.contrast_class") as info:
        Objective.for_classes([0], 3, loss="cross_entropy")
    assert info.value.field == "target.contrast_loss"
    with pytest.raises(InvalidArgument, match="leave target.score_space unset"):
        Objective.for_classes([0], 3, contrast=1, loss="cross_entropy", space="probability")


def sigmoid_head():
    model = builders.linear(RNG.standard_normal((3, 3, 4, 4)).astype(np.float32))
    model.graph.node.append(helper.make_node("Sigmoid", ["logits"], ["probs"]))
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3]))
    return OnnxClassifier(model)


@pytest.mark.parametrize("method", ["saliency", "occlusion"])
def test_a_sigmoid_head_has_no_softmax_cross_entropy(method):
    x = RNG.standard_normal((3, 4, 4)).astype(np.float32)
    with pytest.raises(FailedPrecondition, match="ends in a Sigmoid"):
        explain_once(sigmoid_head(), x, method, cross_entropy())


def correlation(a, b):
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_bundled_tiger_cat_rather_than_tabby_grad_cam(bundled):
    """On chelsea (tiger cat 0.38, tabby 0.17) the loss's map is the paper's contrastive Grad-CAM, neither the
    plain map of tiger cat (correlation 0.27 measured) nor the e_P − e_Q map (0.83; 1 if the option were
    ignored; the plain and e_P − e_Q maps correlate 0.42)."""
    tensor, _ = preprocess(decode_image(builders.png(data.chelsea())), bundled.config.preprocessing,
                           size=(224, 224), channels=3)
    tiger, tabby = bundled.labels.index("tiger cat"), bundled.labels.index("tabby")
    loss = explain_once(bundled, tensor, "grad_cam", Objective.for_classes([tiger], 1000, contrast=tabby,
                                                                           loss="cross_entropy")).heatmaps[0]
    plain = explain_once(bundled, tensor, "grad_cam", Objective.for_classes([tiger], 1000)).heatmaps[0]
    difference = explain_once(bundled, tensor, "grad_cam",
                              Objective.for_classes([tiger], 1000, contrast=tabby)).heatmaps[0]
    assert loss.max() > 0
    assert correlation(loss, plain) < 0.35 and correlation(loss, difference) < 0.9
