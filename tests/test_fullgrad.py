"""FullGrad: the full-gradient completeness identity, localisation, and the post-processing."""

from __future__ import annotations

from pathlib import Path

import builders
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from onnxplain.explainers import Objective, OnnxClassifier
from onnxplain.explainers.autodiff import CLASS_WEIGHTS, INPUT_GRAD, build_gradient_model
from onnxplain.explainers.explain import explain_once
from onnxplain.explainers.methods.fullgrad import bias_terms, normalised, upsampled

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RNG = np.random.default_rng(3)


def _relu_net(*, foldable_batch_norm: bool, seed: int = 0) -> onnx.ModelProto:
    """x [N, 3, 8, 8] → Conv(bias) → BN → Relu → MaxPool 2×2 → Conv(bias) → Relu → [BN] → GAP → Gemm(bias).

    With ``foldable_batch_norm`` the first BN follows the Conv (onnxruntime folds it into the Conv's
    bias); otherwise a BN on the input and one after the last Relu stay BatchNormalization nodes."""
    rng = np.random.default_rng(seed)
    init = {
        "c1w": rng.standard_normal((4, 3, 3, 3)) * 0.5, "c1b": rng.standard_normal(4) * 0.5,
        "c2w": rng.standard_normal((5, 4, 3, 3)) * 0.5, "c2b": rng.standard_normal(5) * 0.5,
        "fw": rng.standard_normal((3, 5)), "fb": rng.standard_normal(3),
    }
    for name, channels in (("bn1", 4), ("bn0", 3), ("bn2", 5)):
        init |= {f"{name}_s": rng.uniform(0.5, 2, channels), f"{name}_b": rng.standard_normal(channels),
                 f"{name}_m": rng.standard_normal(channels) * 0.3, f"{name}_v": rng.uniform(0.5, 2, channels)}

    def batch_norm(name, source, target):
        return helper.make_node("BatchNormalization", [source] + [f"{name}_{k}" for k in "sbmv"], [target],
                                epsilon=1e-3)

    conv1 = helper.make_node("Conv", ["x0", "c1w", "c1b"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    nodes = [batch_norm("bn0", "x", "x0"), conv1] if not foldable_batch_norm else [
        helper.make_node("Identity", ["x"], ["x0"]), conv1, batch_norm("bn1", "c1", "c1n")]
    nodes += [
        helper.make_node("Relu", ["c1n" if foldable_batch_norm else "c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "c2w", "c2b"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
    ]
    if not foldable_batch_norm:
        nodes.append(batch_norm("bn2", "r2", "r2n"))
    nodes += [
        helper.make_node("GlobalAveragePool", ["r2" if foldable_batch_norm else "r2n"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fw", "fb"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(nodes, "relu_net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in init.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("foldable", [True, False])
def test_full_gradient_completeness_on_a_relu_net(foldable):
    """f(x) = Σ x ⊙ ∂f/∂x + Σ_layers Σ b ⊙ ∂f/∂z for a ReLU/MaxPool net with biases: checked
    on the raw graph (BatchNormalization's bias B − μ·γ/√(σ² + ε)) and by the method (which
    differentiates onnxruntime's simplified graph, where a BN after a Conv is folded away)."""
    model = _relu_net(foldable_batch_norm=foldable)
    terms = bias_terms(model.graph, "x", "logits")
    assert [t.layer for t in terms] == (["c1", "c1n", "c2", "logits"] if foldable else ["x0", "c1", "c2", "r2n", "logits"])
    graph = build_gradient_model(model, layers=[t.layer for t in terms])
    x = RNG.standard_normal((2, 3, 8, 8)).astype(np.float32)
    seeds = np.array([[1, 0, 0], [0, 1, -1]], np.float32)
    names = [INPUT_GRAD, "logits"] + [graph.layers[t.layer][1] for t in terms]
    grad, logits, *layer_grads = ReferenceEvaluator(graph.model).run(names, {"x": x, CLASS_WEIGHTS: seeds})
    total = (x.astype(np.float64) * grad).reshape(2, -1).sum(axis=1)
    for term, layer_grad in zip(terms, layer_grads):
        total += (layer_grad * term.broadcast(layer_grad.ndim - 1)).reshape(2, -1).sum(axis=1)
    np.testing.assert_allclose(total, (logits * seeds).sum(axis=1), rtol=1e-5, atol=1e-5)

    classifier = OnnxClassifier(model)
    result = explain_once(classifier, x[0], "fullgrad", Objective.for_classes([0, 2], 3))
    assert result.extras["bias_terms"] == (3 if foldable else 5)
    assert abs(result.extras["completeness_gap"]) < 1e-4 * np.abs(result.scores).max()
    assert result.heatmaps.shape == (2, 8, 8) and (result.heatmaps >= 0).all()


def test_quadrant_model_puts_all_heat_in_its_quadrant():
    classifier = OnnxClassifier(builders.quadrant(size=16))
    x = RNG.uniform(0.5, 1.5, (3, 16, 16)).astype(np.float32)
    result = explain_once(classifier, x, "fullgrad", Objective.for_classes([0, 1], 2))
    inside = np.zeros((16, 16), bool)
    inside[:8, :8] = True
    assert (result.heatmaps[:, inside] > 0).all() and (result.heatmaps[:, ~inside] == 0).all()
    assert result.extras["bias_terms"] == 0


def test_linear_model_keeps_its_bias_out_of_the_map_but_in_the_identity():
    weights = RNG.standard_normal((2, 3, 8, 8)).astype(np.float32)
    classifier = OnnxClassifier(builders.linear(weights, bias=np.array([1.5, -2.0])))
    x = RNG.standard_normal((3, 8, 8)).astype(np.float32)
    result = explain_once(classifier, x, "fullgrad", Objective.for_classes([1], 2))
    np.testing.assert_allclose(result.heatmaps[0], normalised((x * weights[1])[None])[0].sum(axis=0), rtol=1e-5,
                               atol=1e-6)
    assert result.extras["bias_terms"] == 1 and abs(result.extras["completeness_gap"]) < 1e-4


def test_post_processing_follows_the_reference_implementation():
    maps = np.array([[[[-2.0, 1.0], [0.5, 0.0]]]])  # [T=1, C=1, 2, 2]
    np.testing.assert_allclose(normalised(maps), [[[[1.0, 0.5], [0.25, 0.0]]]], rtol=1e-5)  # abs, min-max
    grown = upsampled(np.array([[[0.0, 1.0], [2.0, 3.0]]]), (3, 5))  # aligned corners: corners kept
    np.testing.assert_allclose(grown[0, [0, 0, -1, -1], [0, -1, 0, -1]], [0, 1, 2, 3])
    np.testing.assert_allclose(grown[0, 1], [1.0, 1.25, 1.5, 1.75, 2.0])


@pytest.mark.parametrize("image", [0, 1])
def test_agrees_with_the_authors_implementation(image):
    """idiap/fullgrad-saliency's FullGrad.saliency on a ReLU/MaxPool CNN with biased convs and linear
    layers (tools/fixtures/golden_fullgrad.py)."""
    golden = np.load(FIXTURES / "fullgrad_golden.npz")
    classifier = OnnxClassifier.load(FIXTURES / "captum_relu_model.onnx")
    result = explain_once(classifier, golden["x"][image], "fullgrad",
                          Objective.for_classes([int(golden["targets"][image])], 5))
    np.testing.assert_allclose(result.heatmaps[0], golden["saliency"][image], rtol=1e-4, atol=1e-4)
    assert result.extras["bias_terms"] == 5 and abs(result.extras["completeness_gap"]) < 1e-4
