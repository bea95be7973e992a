"""Saliency, input × gradient, guided backprop and DeconvNet on analytic models and a literal
numpy backward pass (the conformance suite covers determinism and batch-size invariance)."""

from __future__ import annotations

from pathlib import Path

import builders
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxplain.explainers import (
    Evaluator,
    Family,
    Objective,
    OnnxClassifier,
    Planned,
    explain,
    explain_once,
    get_method,
)
from onnxplain.explainers.errors import FailedPrecondition, InvalidArgument

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RNG = np.random.default_rng(7)
MAPS = ["saliency", "input_x_gradient", "guided_backprop", "deconvnet"]


def linear_case(softmax: bool = False):
    w = RNG.standard_normal((3, 3, 6, 5)).astype(np.float32)
    bias = np.array([0.5, -1, 2], np.float32)
    x = RNG.standard_normal((3, 6, 5)).astype(np.float32)
    return OnnxClassifier(builders.linear(w, bias=bias, softmax=softmax)), w, bias, x


@pytest.mark.parametrize("method", MAPS)
def test_registered_as_white_box_gradient_methods_without_parameters(method):
    spec = get_method(method)
    assert (spec.family, spec.black_box, spec.params.describe()) == (Family.GRADIENT, False, [])
    with pytest.raises(InvalidArgument, match="allowed: none") as info:
        spec.params.from_mapping({"steps": 3})
    assert info.value.field == "params.steps"


@pytest.mark.parametrize("method", MAPS)
def test_one_forward_and_one_backward_per_target(method):
    classifier, _, _, x = linear_case()
    planned, final = explain(classifier, x, method, Objective.for_classes([0, 2], 3))
    assert planned == Planned(forward=2, backward=2)
    assert (final.forward, final.backward) == (2, 2) and final.heatmaps.shape == (2, 6, 5)


@pytest.mark.parametrize("softmax", [False, True])
def test_scores_are_the_objective_on_the_input_like_black_box_methods(softmax):
    classifier, w, _, x = linear_case(softmax=softmax)  # a final Softmax is cut: its logits are differentiated
    objective = Objective.for_classes([0, 2], 3)
    result = explain_once(classifier, x, "saliency", objective)
    np.testing.assert_allclose(result.scores, Evaluator(classifier).objective_value(x, objective), rtol=1e-5)
    np.testing.assert_allclose(result.heatmaps, np.abs(w[[0, 2]]).max(axis=1), rtol=1e-6)


@pytest.mark.parametrize("softmax", [True, False], ids=["softmax_output", "logits_output"])
def test_probability_space_differentiates_the_softmax(softmax):
    """With a Softmax output its probabilities are differentiated; with logits, softmax(logits) is seeded in
    the graph (one forward + one backward per target, as for logits; it used to be refused)."""
    w = np.random.default_rng(8).standard_normal((3, 3, 4, 5)).astype(np.float32)
    classifier = OnnxClassifier(builders.linear(w, softmax=softmax))
    x = np.random.default_rng(9).standard_normal((3, 4, 5)).astype(np.float32)
    objective = Objective.for_classes([1, 2], 3, space="probability")
    planned, result = explain(classifier, x, "input_x_gradient", objective)
    z = np.einsum("kchw,chw->k", w.astype(np.float64), x)
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    for row, k in enumerate((1, 2)):
        grad = p[k] * (w[k] - np.einsum("k,kchw->chw", p, w))  # d p_k / d x
        np.testing.assert_allclose(result.heatmaps[row], (grad * x).sum(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result.scores, p[[1, 2]], rtol=1e-5)
    assert planned == Planned(forward=2, backward=2) and (result.forward, result.backward) == (2, 2)


@pytest.mark.parametrize("reshape", [None, "Identity", "Flatten"])
def test_probability_space_of_a_sigmoid_output_differentiates_the_sigmoid(reshape):
    """A Sigmoid head's outputs are its probabilities, also behind an op that only reshapes them (its rows do not
    sum to 1, so only the graph tells): d σ(z_k)/dx = σ(z_k)(1 − σ(z_k)) w_k (was refused; then, behind an
    Identity, softmax(σ) was differentiated)."""
    w = np.random.default_rng(10).standard_normal((3, 3, 4, 5)).astype(np.float32)
    model = builders.linear(w)
    model.graph.node.append(helper.make_node("Sigmoid", ["logits"], ["sigmoid" if reshape else "probs"]))
    if reshape:
        model.graph.node.append(helper.make_node(reshape, ["sigmoid"], ["probs"]))
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3]))
    x = np.random.default_rng(11).standard_normal((3, 4, 5)).astype(np.float32)
    classifier = OnnxClassifier(model)
    assert classifier.outputs_are_probabilities
    result = explain_once(classifier, x, "input_x_gradient", Objective.for_classes([0], 3, space="probability"))
    s = 1 / (1 + np.exp(-np.einsum("kchw,chw->k", w.astype(np.float64), x)))
    np.testing.assert_allclose(result.heatmaps[0], (s[0] * (1 - s[0]) * w[0] * x).sum(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result.scores, [s[0]], rtol=1e-5)


def test_probability_space_of_logits_is_refused_with_a_baseline_pass():
    classifier, _, _, x = linear_case()
    with pytest.raises(FailedPrecondition, match="softmax.logits., not linear"):
        explain_once(classifier, x, "deeplift", Objective.for_classes([0], 3, space="probability"))


@pytest.mark.parametrize("contrast", [None, 2])
def test_linear_model_saliency_is_max_abs_weight_and_input_x_gradient_is_w_times_x(contrast):
    classifier, w, _, x = linear_case()
    objective = Objective.for_classes([0, 1], 3, contrast=contrast)
    direction = w[[0, 1]] - (0 if contrast is None else w[contrast])  # w_P − w_Q for "P rather than Q"
    saliency = explain_once(classifier, x, "saliency", objective).heatmaps
    np.testing.assert_allclose(saliency, np.abs(direction).max(axis=1), rtol=1e-6)
    times = explain_once(classifier, x, "input_x_gradient", objective).heatmaps
    np.testing.assert_allclose(times, (direction * x).sum(axis=1), rtol=1e-5, atol=1e-6)
    # no ReLU: the modified backward rules change nothing, only the signed channel sum remains
    for method in ("guided_backprop", "deconvnet"):
        np.testing.assert_allclose(explain_once(classifier, x, method, objective).heatmaps, direction.sum(axis=1),
                                   rtol=1e-5, atol=1e-6)


def relu_first_net(seed: int = 0, size: int = 5, channels: int = 2, hidden: int = 3, classes: int = 3):
    """x → Relu → Conv(3x3, pad 1) → Relu → Flatten → Gemm: the first layer rectifies the input and
    the upstream gradient changes sign from pixel to pixel."""
    rng = np.random.default_rng(seed)
    params = {
        "cw": rng.standard_normal((hidden, channels, 3, 3)),
        "cb": rng.standard_normal(hidden) * 0.3,
        "fw": rng.standard_normal((classes, hidden * size * size)),
        "fb": rng.standard_normal(classes) * 0.1,
    }
    nodes = [
        helper.make_node("Relu", ["x"], ["a0"]),
        helper.make_node("Conv", ["a0", "cw", "cb"], ["z1"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["z1"], ["a1"]),
        helper.make_node("Flatten", ["a1"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fw", "fb"], ["logits"], transB=1),
    ]
    model = builders._model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(v.astype(np.float32), name) for name, v in params.items()],
    )
    return model, {name: v.astype(np.float32).astype(np.float64) for name, v in params.items()}


def literal_backprop(p: dict, x: np.ndarray, seed: np.ndarray, rules: str) -> np.ndarray:
    """d(seed · logits)/dx of :func:`relu_first_net` in float64 loops, with ``rules``' ReLU backward."""
    relu_backward = {
        "vanilla": lambda g, pre: g * (pre > 0),
        "guided_backprop": lambda g, pre: g * (pre > 0) * (g > 0),
        "deconvnet": lambda g, pre: np.maximum(g, 0),
    }[rules]
    channels, size, _ = x.shape
    hidden = p["cw"].shape[0]
    a0 = np.pad(np.maximum(x, 0), ((0, 0), (1, 1), (1, 1)))
    z1 = np.zeros((hidden, size, size))
    for o in range(hidden):
        for i in range(size):
            for j in range(size):
                z1[o, i, j] = (p["cw"][o] * a0[:, i : i + 3, j : j + 3]).sum() + p["cb"][o]
    g_a1 = (seed @ p["fw"]).reshape(hidden, size, size)
    g_z1 = relu_backward(g_a1, z1)
    g_a0 = np.zeros_like(a0)
    for o in range(hidden):
        for i in range(size):
            for j in range(size):
                g_a0[:, i : i + 3, j : j + 3] += p["cw"][o] * g_z1[o, i, j]
    return relu_backward(g_a0[:, 1:-1, 1:-1], x)


@pytest.mark.parametrize(("method", "rules"), [("guided_backprop", "guided_backprop"), ("deconvnet", "deconvnet"),
                                               ("input_x_gradient", "vanilla")])
def test_relu_net_matches_a_literal_numpy_backward_pass(method, rules):
    model, p = relu_first_net(seed=4)
    x = RNG.standard_normal((2, 5, 5)).astype(np.float32)
    objective = Objective.for_classes([0, 2], 3, contrast=1)  # mixed-sign seeds
    heatmaps = explain_once(OnnxClassifier(model), x, method, objective).heatmaps
    for t, seed in enumerate(objective.weights.astype(np.float64)):
        grad = literal_backprop(p, x.astype(np.float64), seed, rules)
        expected = (grad * x).sum(0) if method == "input_x_gradient" else grad.sum(0)
        np.testing.assert_allclose(heatmaps[t], expected, rtol=1e-4, atol=1e-5)
        if rules != "vanilla":  # the input ReLU's backward leaves only non-negative gradient
            assert (grad >= 0).all() and (heatmaps[t] >= 0).all()


def test_guided_backprop_and_deconvnet_differ_from_the_gradient_on_a_relu_net():
    model, p = relu_first_net(seed=4)
    x = RNG.standard_normal((2, 5, 5)).astype(np.float32)
    objective = Objective.for_classes([1], 3)
    classifier = OnnxClassifier(model)
    vanilla = literal_backprop(p, x.astype(np.float64), objective.weights[0].astype(np.float64), "vanilla").sum(0)
    for method in ("guided_backprop", "deconvnet"):
        heatmap = explain_once(classifier, x, method, objective).heatmaps[0]
        assert not np.allclose(heatmap, vanilla, atol=1e-3)


def test_deconvnet_ignores_the_input_of_a_net_without_max_pooling():
    classifier = OnnxClassifier(relu_first_net(seed=4)[0])
    objective = Objective.for_classes([0, 1], 3)
    first, second = (explain_once(classifier, RNG.standard_normal((2, 5, 5)).astype(np.float32), "deconvnet",
                                  objective).heatmaps for _ in range(2))
    np.testing.assert_array_equal(first, second)


# ---------------------------------------------------------------- Captum
CAPTUM_REDUCTIONS = {  # heatmap = reduction of Captum's per-channel attribution [C, H, W] (its golden's key)
    "saliency": lambda attribution: attribution.max(axis=0),
    "input_x_gradient": lambda attribution: attribution.sum(axis=0),
    "guided_backprop": lambda attribution: attribution.sum(axis=0),
    "deconvnet": lambda attribution: attribution.sum(axis=0),
}


@pytest.fixture(scope="module")
def captum():
    """A ReLU/MaxPool CNN and Captum's attributions of it (tools/fixtures/golden_captum_relu.py)."""
    data = np.load(FIXTURES / "captum_relu_golden.npz")
    return OnnxClassifier.load(FIXTURES / "captum_relu_model.onnx"), {key: data[key] for key in data.files}


@pytest.mark.parametrize("method", MAPS)
@pytest.mark.parametrize("image", [0, 1])
def test_maps_agree_with_captum_on_a_relu_max_pool_net(captum, method, image):
    classifier, golden = captum
    objective = Objective.for_classes([int(golden["targets"][image])], 5)
    heatmap = explain_once(classifier, golden["x"][image], method, objective).heatmaps[0]
    expected = CAPTUM_REDUCTIONS[method](golden[method][image])
    np.testing.assert_allclose(heatmap, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize(("rules", "key"), [("vanilla", "gradient"), ("guided_backprop", "guided_backprop"),
                                            ("deconvnet", "deconvnet")])
def test_per_channel_input_gradients_agree_with_captum(captum, rules, key):
    classifier, golden = captum
    for x, target, expected in zip(golden["x"], golden["targets"], golden[key], strict=True):
        (batch,) = Evaluator(classifier).gradients(1, lambda start, stop, x=x: x[None],
                                                   Objective.for_classes([int(target)], 5), rules=rules)
        np.testing.assert_allclose(batch.input_grad[0, 0], expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
