"""CAM, Grad-CAM, guided Grad-CAM and Grad-CAM++: analytic heads, head detection, and pytorch-grad-cam goldens.

The goldens (tests/fixtures/cams_*) come from tools/fixtures/golden_cams.py; pytorch-grad-cam's maps are
ReLU'd, min-max normalised and resized, so ours are compared after the same normalisation (min-max is
affine and the bilinear resize preserves constants, so normalising before or after resizing agrees).
"""

from __future__ import annotations

from pathlib import Path

import builders
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxplain.explainers import Objective, OnnxClassifier, explain, explain_once
from onnxplain.explainers.errors import FailedPrecondition, NotFound
from onnxplain.explainers.methods.cam_base import layer_gradients
from onnxplain.explainers.methods.grad_cam import grad_cam_weights
from onnxplain.explainers.methods.grad_cam_plus_plus import grad_cam_plus_plus_weights
from onnxplain.explainers.model import Evaluator, Variant
from onnxplain.explainers.perturb.masks.bilinear import bilinear_matrix

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CAMS = ("cam", "grad_cam", "guided_grad_cam", "grad_cam_plus_plus")
GRADIENT_CAMS = ("grad_cam", "guided_grad_cam", "grad_cam_plus_plus")
RNG = np.random.default_rng(7)


def minmax(maps: np.ndarray) -> np.ndarray:
    low = maps.min(axis=(-2, -1), keepdims=True)
    return (maps - low) / (maps.max(axis=(-2, -1), keepdims=True) - low)


def upsample(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """[T, h, w] → [T, H, W], half-pixel bilinear (cv2.resize's INTER_LINEAR)."""
    rows, cols = bilinear_matrix(maps.shape[-2], height), bilinear_matrix(maps.shape[-1], width)
    return np.einsum("Hh,thw,Ww->tHW", rows, maps, cols)


def cnn(head: str, *, size: int = 12, hidden: int = 5, classes: int = 4, stride: int = 2, seed: int = 0
        ) -> onnx.ModelProto:
    """Conv(3×3, pad 1, ``stride``) → Relu ("act") → one of these heads:

    ``gap_matmul``: GlobalAveragePool → Reshape [-1, K] → MatMul → Add (a constant bias);
    ``gap_softmax``: GlobalAveragePool → Flatten → Gemm (transB 0, alpha 0.5) → Softmax;
    ``flatten``: VGG-style, MaxPool 2 → Flatten → Gemm (no global pooling);
    ``mlp``: GlobalAveragePool → Flatten → Gemm → Relu → Gemm (GAP, but not followed by *one* linear layer);
    ``pooled_relu``: GlobalAveragePool → Flatten → Relu → Gemm;
    ``gap_only``: GlobalAveragePool → Flatten, the logits themselves (SqueezeNet; needs hidden == classes).
    """
    rng = np.random.default_rng(seed)
    side = -(-size // stride)
    inits = {"cw": rng.standard_normal((hidden, 3, 3, 3)), "cb": 0.1 * rng.standard_normal(hidden)}
    nodes = [helper.make_node("Conv", ["x", "cw", "cb"], ["conv"], pads=[1, 1, 1, 1], kernel_shape=[3, 3],
                              strides=[stride, stride]),
             helper.make_node("Relu", ["conv"], ["act"])]
    out = "logits"
    if head == "gap_matmul":
        inits |= {"shape": np.array([-1, hidden], np.int64), "fw": rng.standard_normal((hidden, classes)),
                  "fb": rng.standard_normal(classes)}
        nodes += [helper.make_node("GlobalAveragePool", ["act"], ["pool"]),
                  helper.make_node("Reshape", ["pool", "shape"], ["flat"]),
                  helper.make_node("MatMul", ["flat", "fw"], ["mm"]),
                  helper.make_node("Add", ["mm", "fb"], ["logits"])]
    elif head == "gap_softmax":
        inits |= {"fw": rng.standard_normal((hidden, classes)), "fb": rng.standard_normal(classes)}
        nodes += [helper.make_node("GlobalAveragePool", ["act"], ["pool"]),
                  helper.make_node("Flatten", ["pool"], ["flat"]),
                  helper.make_node("Gemm", ["flat", "fw", "fb"], ["z"], alpha=0.5),
                  helper.make_node("Softmax", ["z"], ["probs"], axis=1)]
        out = "probs"
    elif head == "flatten":
        features = hidden * (side // 2) ** 2
        inits |= {"fw": rng.standard_normal((classes, features)), "fb": rng.standard_normal(classes)}
        nodes += [helper.make_node("MaxPool", ["act"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
                  helper.make_node("Flatten", ["mp"], ["flat"]),
                  helper.make_node("Gemm", ["flat", "fw", "fb"], ["logits"], transB=1)]
    elif head == "mlp":
        inits |= {"f1": rng.standard_normal((6, hidden)), "b1": rng.standard_normal(6),
                  "f2": rng.standard_normal((classes, 6)), "b2": rng.standard_normal(classes)}
        nodes += [helper.make_node("GlobalAveragePool", ["act"], ["pool"]),
                  helper.make_node("Flatten", ["pool"], ["flat"]),
                  helper.make_node("Gemm", ["flat", "f1", "b1"], ["h"], transB=1),
                  helper.make_node("Relu", ["h"], ["hr"]),
                  helper.make_node("Gemm", ["hr", "f2", "b2"], ["logits"], transB=1)]
    elif head == "pooled_relu":
        inits |= {"fw": rng.standard_normal((classes, hidden)), "fb": rng.standard_normal(classes)}
        nodes += [helper.make_node("GlobalAveragePool", ["act"], ["pool"]),
                  helper.make_node("Flatten", ["pool"], ["flat"]),
                  helper.make_node("Relu", ["flat"], ["flat_relu"]),
                  helper.make_node("Gemm", ["flat_relu", "fw", "fb"], ["logits"], transB=1)]
    elif head == "gap_only":
        nodes += [helper.make_node("GlobalAveragePool", ["act"], ["pool"]),
                  helper.make_node("Flatten", ["pool"], ["logits"])]
    initializers = [numpy_helper.from_array(v if v.dtype == np.int64 else v.astype(np.float32), k)
                    for k, v in inits.items()]
    graph = helper.make_graph(nodes, "cams", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", classes])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def weights_of(model: onnx.ModelProto, name: str) -> np.ndarray:
    return next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name == name).astype(np.float64)


# ---------------------------------------------------------------- analytic heads


def test_grad_cam_equals_relu_cam_over_hw_on_a_gap_linear_net():
    """small_cnn's CAM layer is 16×16 like the input, so upsampling is the identity: exact."""
    classifier = OnnxClassifier(builders.small_cnn())
    x = RNG.standard_normal((3, 16, 16)).astype(np.float32)
    objective = Objective.for_classes([0, 2], 3, contrast=1)
    cam = explain_once(classifier, x, "cam", objective)
    grad = explain_once(classifier, x, "grad_cam", objective)
    assert cam.heatmaps.min() < 0  # CAM is signed (Zhou et al. eq. 2), Grad-CAM rectified
    np.testing.assert_allclose(grad.heatmaps * 16 * 16, np.maximum(cam.heatmaps, 0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cam.scores, grad.scores, rtol=1e-5)


@pytest.mark.parametrize("head", ["gap_matmul", "gap_softmax"])
def test_cam_reads_the_head_weights_through_reshape_matmul_gemm_and_softmax(head):
    model = cnn(head)
    classifier = OnnxClassifier(model)
    x = RNG.standard_normal((3, 12, 12)).astype(np.float32)
    objective = Objective.for_classes([3, 1], 4)
    activation = Evaluator(classifier).layer_activations(x[None], ["act"])["act"][0]
    w = weights_of(model, "fw").T * (0.5 if head == "gap_softmax" else 1.0)  # [classes, K]
    lowres = np.einsum("tk,khw->thw", objective.weights @ w, activation)  # [T, 6, 6]
    cam = explain_once(classifier, x, "cam", objective)
    np.testing.assert_allclose(cam.heatmaps, upsample(lowres, 12, 12), rtol=1e-4, atol=1e-5)
    grad = explain_once(classifier, x, "grad_cam", objective)  # logits are differentiated, not the softmax
    np.testing.assert_allclose(grad.heatmaps, upsample(np.maximum(lowres, 0) / 36, 12, 12), rtol=1e-4, atol=1e-6)


def test_cam_of_pooled_maps_that_are_the_class_scores_is_the_class_map():
    """SqueezeNet's head: logits_c = GAP(A_c), so w = I."""
    classifier = OnnxClassifier(cnn("gap_only", hidden=4))
    x = RNG.standard_normal((3, 12, 12)).astype(np.float32)
    objective = Objective.for_classes([2, 0], 4, contrast=1)
    activation = Evaluator(classifier).layer_activations(x[None], ["act"])["act"][0]
    lowres = np.einsum("tk,khw->thw", objective.weights, activation)
    np.testing.assert_allclose(explain_once(classifier, x, "cam", objective).heatmaps, upsample(lowres, 12, 12),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("head, feeds", [("flatten", "MaxPool"), ("mlp", "Relu"), ("pooled_relu", "Relu")])
def test_cam_needs_a_gap_linear_head_while_grad_cam_works_on_any_head(head, feeds):
    classifier = OnnxClassifier(cnn(head))
    x = RNG.standard_normal((3, 12, 12)).astype(np.float32)
    objective = Objective.for_classes([0], 4)
    with pytest.raises(FailedPrecondition, match=f"feeds? {feeds}, not a") as info:
        explain_once(classifier, x, "cam", objective)
    assert "'act'" in str(info.value)
    for method in GRADIENT_CAMS:
        result = explain_once(classifier, x, method, objective)
        assert result.heatmaps.shape == (1, 12, 12) and np.all(np.isfinite(result.heatmaps))
    assert explain_once(classifier, x, "grad_cam", objective).heatmaps.max() > 0


def test_an_explicit_layer_is_used_and_cam_names_what_it_feeds():
    classifier = OnnxClassifier(builders.small_cnn())
    x = RNG.standard_normal((3, 16, 16)).astype(np.float32)
    objective = Objective.for_classes([1], 3)
    default = explain_once(classifier, x, "grad_cam", objective).heatmaps
    np.testing.assert_array_equal(explain_once(classifier, x, "grad_cam", objective, {"layer": "act"}).heatmaps, default)
    before_relu = explain_once(classifier, x, "grad_cam", objective, {"layer": "conv"}).heatmaps
    assert not np.allclose(before_relu, default)
    with pytest.raises(FailedPrecondition, match="feeds Relu"):
        explain_once(classifier, x, "cam", objective, {"layer": "conv"})


@pytest.mark.parametrize("method", CAMS)
def test_an_unknown_layer_is_rejected_with_the_layers_listed(method):
    classifier = OnnxClassifier(builders.small_cnn())
    x = RNG.standard_normal((3, 16, 16)).astype(np.float32)
    with pytest.raises(NotFound, match="unknown layer 'nope'; available: act, conv"):
        next(explain(classifier, x, method, Objective.for_classes([0], 3), {"layer": "nope"}))


@pytest.mark.parametrize("method, forward, backward", [
    ("cam", 1, 0), ("grad_cam", 3, 3), ("grad_cam_plus_plus", 3, 3), ("guided_grad_cam", 6, 6)])
def test_planned_passes_and_targets_sharing_the_work(method, forward, backward):
    classifier = OnnxClassifier(builders.small_cnn())
    x = RNG.standard_normal((3, 16, 16)).astype(np.float32)
    events = list(explain(classifier, x, method, Objective.for_classes([0, 1, 2], 3)))
    assert (events[0].forward, events[0].backward) == (forward, backward)
    assert (events[-1].forward, events[-1].backward) == (forward, backward)
    for t in range(3):
        alone = explain_once(classifier, x, method, Objective.for_classes([t], 3)).heatmaps[0]
        np.testing.assert_allclose(events[-1].heatmaps[t], alone, rtol=1e-5, atol=1e-7)


def test_guided_grad_cam_is_the_guided_input_gradient_times_grad_cam():
    classifier = OnnxClassifier(builders.small_cnn())
    x = RNG.standard_normal((3, 16, 16)).astype(np.float32)
    objective = Objective.for_classes([2], 3)
    grad = explain_once(classifier, x, "grad_cam", objective).heatmaps
    guided = explain_once(classifier, x, "guided_grad_cam", objective).heatmaps
    *_, input_grad, _ = layer_gradients(Evaluator(classifier), x, objective, "act", rules="guided_backprop",
                                       input_gradient=True)
    np.testing.assert_allclose(guided, input_grad.sum(axis=1) * grad, rtol=1e-5, atol=1e-7)


def test_grad_cam_and_fullgrad_use_separate_graphs_for_the_same_layer():
    """Grad-CAM's graph has no input gradient; a method needing one on the same layer gets its own."""
    classifier = OnnxClassifier(builders.small_cnn())
    x = RNG.standard_normal((3, 16, 16)).astype(np.float32)
    objective = Objective.for_classes([1], 3)
    explain_once(classifier, x, "grad_cam", objective)
    assert classifier.sessions.variants()[-1] == Variant.gradient(layers=("act",), input_gradient=False)
    activation, gradient, input_grad, _ = layer_gradients(Evaluator(classifier), x, objective, "act",
                                                          input_gradient=True)
    assert input_grad is not None and input_grad.shape == (1, 3, 16, 16) and np.abs(input_grad).max() > 0
    assert classifier.sessions.variants()[-1] == Variant.gradient(layers=("act",))
    head_only = layer_gradients(Evaluator(classifier), x, objective, "act")
    np.testing.assert_allclose(head_only[1], gradient, rtol=1e-6)


def test_grad_cam_plus_plus_weights_follow_the_closed_form():
    activation = RNG.uniform(0, 2, (2, 3, 4, 5))
    gradient = RNG.standard_normal((2, 3, 4, 5))
    gradient[0, 1, 2] = 0.0
    expected = np.zeros((2, 3))
    for t, k, i, j in np.ndindex(*gradient.shape):
        g = gradient[t, k, i, j]
        if g != 0:
            alpha = g**2 / (2 * g**2 + activation[t, k].sum() * g**3 + 1e-6)
            expected[t, k] += alpha * max(g, 0.0)
    np.testing.assert_allclose(grad_cam_plus_plus_weights(activation, gradient), expected, rtol=1e-12)


# ---------------------------------------------------------------- pytorch-grad-cam goldens


@pytest.fixture(scope="module")
def golden():
    data = np.load(FIXTURES / "cams_golden.npz")
    return OnnxClassifier.load(FIXTURES / "cams_model.onnx"), {key: data[key] for key in data.files}


def each_sample(classifier, golden, method):
    x, targets = golden["x"], golden["targets"]
    return np.concatenate([explain_once(classifier, x[i], method, Objective.for_classes([int(targets[i])], 10),
                                        {"layer": str(golden["layer"])}).heatmaps for i in range(len(x))])


def test_the_golden_layer_is_the_default_cam_layer(golden):
    classifier, data = golden
    assert classifier.cam_layer == str(data["layer"])


@pytest.mark.parametrize("method", ["grad_cam", "grad_cam_plus_plus"])
def test_channel_weights_match_pytorch_grad_cam(golden, method):
    classifier, data = golden
    weights = {"grad_cam": grad_cam_weights, "grad_cam_plus_plus": grad_cam_plus_plus_weights}[method]
    for i, target in enumerate(data["targets"]):
        activation, gradient, _, _ = layer_gradients(Evaluator(classifier), data["x"][i],
                                                     Objective.for_classes([int(target)], 10), str(data["layer"]))
        np.testing.assert_allclose(activation[0], data["activation"][i], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(weights(activation, gradient)[0], data[f"{method}_weights"][i], rtol=1e-4,
                                   atol=1e-6)


@pytest.mark.parametrize("method, key", [("grad_cam", "grad_cam"), ("grad_cam_plus_plus", "grad_cam_plus_plus"),
                                         ("grad_cam", "cam")])
def test_maps_match_pytorch_grad_cam_after_its_normalisation(golden, method, key):
    classifier, data = golden
    np.testing.assert_allclose(minmax(each_sample(classifier, data, method)), data[key], atol=1e-5)


def test_cam_matches_the_torch_head_and_hirescam(golden):
    classifier, data = golden
    ours = each_sample(classifier, data, "cam")
    w = data["fc_weight"][data["targets"]].astype(np.float64)  # [2, K]
    lowres = np.einsum("nk,nkhw->nhw", w, data["activation"].astype(np.float64))
    np.testing.assert_allclose(ours, upsample(lowres, 32, 40), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(minmax(upsample(np.maximum(lowres, 0), 32, 40)), data["cam"], atol=1e-5)


def test_guided_grad_cam_matches_pytorch_grad_cam_guided_backprop(golden):
    classifier, data = golden
    grad = each_sample(classifier, data, "grad_cam")
    ours = each_sample(classifier, data, "guided_grad_cam")
    expected = data["guided"].sum(axis=1) * grad
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
