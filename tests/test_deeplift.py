"""DeepLIFT (rescale rule): analytic answers, summation-to-delta on real architectures, and a literal
numpy re-implementation of the rules on a small net."""

from __future__ import annotations

from pathlib import Path

import builders
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxplain.explainers import ModelConfig, Objective, OnnxClassifier, Planned, explain
from onnxplain.explainers.errors import InvalidArgument
from onnxplain.explainers.explain import explain_once
from onnxplain.explainers.graph.baseline_pass import BASELINE_IMAGE
from onnxplain.explainers.model import Variant

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RNG = np.random.default_rng(7)


def test_linear_model_is_explained_exactly_by_differences_times_weights():
    weights = RNG.standard_normal((3, 3, 8, 8)).astype(np.float32)
    classifier = OnnxClassifier(builders.linear(weights, bias=np.array([0.5, -1.0, 2.0]), softmax=True))
    x = RNG.standard_normal((3, 8, 8)).astype(np.float32)
    baseline = RNG.standard_normal((3, 8, 8)).astype(np.float32)
    objective = Objective.for_classes([0, 1], 3, contrast=2)
    result = explain_once(classifier, x, "deeplift", objective, {"baseline": "tensor", "baseline_tensor": baseline})
    expected = ((x - baseline)[None] * (weights[[0, 1]] - weights[2])).sum(axis=1)
    np.testing.assert_allclose(result.heatmaps, expected, rtol=1e-5, atol=1e-5)
    # the model ends in Softmax: completeness holds for the logits it differentiates
    assert abs(result.extras["completeness_gap"]) < 1e-4 and result.extras["completeness_gap_relative"] < 1e-5
    zero = explain_once(classifier, x, "deeplift", objective)
    np.testing.assert_allclose(zero.heatmaps, (x[None] * (weights[[0, 1]] - weights[2])).sum(axis=1), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("name", ["resnet_legacy", "vgg_legacy", "efficientnet_legacy", "vit_dynamo",
                                  "tf_style_nhwc"])
@pytest.mark.parametrize("baseline", ["zero", "blur"])
def test_summation_to_delta_on_real_architectures(name, baseline):
    """MaxPool nets (resnet, vgg), SiLU/squeeze-excitation products (efficientnet), attention with
    LayerNorm, Softmax and GELU (vit), an NHWC input (tf_style): Σ attributions = s(x) − s(x′)."""
    classifier = OnnxClassifier.load(FIXTURES / f"{name}.onnx", config=ModelConfig(max_batch=4))
    x = np.load(FIXTURES / f"{name}.npz")["x"][0]
    if classifier.signature.layout == "NHWC":
        x = x.transpose(2, 0, 1)
    x = np.ascontiguousarray(x, dtype=np.float32)
    result = explain_once(classifier, x, "deeplift", Objective.for_classes([3, 7], classifier.num_classes),
                          {"baseline": baseline})
    assert result.extras["completeness_gap_relative"] < 1e-4, result.extras
    assert result.forward == 4 and result.backward == 2


def test_passes_and_the_baseline_fed_once_per_request():
    classifier = OnnxClassifier(builders.small_cnn(), config=ModelConfig(max_batch=3))
    x = RNG.standard_normal((3, 16, 16)).astype(np.float32)
    objective = Objective.for_classes([0, 1, 2], 3)
    events = list(explain(classifier, x, "deeplift", objective))
    assert events[0] == Planned(forward=6, backward=3)
    session = classifier.compiled(Variant.gradient(rules="deeplift_rescale", baseline_pass=True)).session
    (baseline,) = [i for i in session.get_inputs() if i.name == BASELINE_IMAGE]
    assert baseline.shape[0] == 1
    one_by_one = OnnxClassifier(builders.small_cnn(), config=ModelConfig(max_batch=1))
    np.testing.assert_allclose(explain_once(one_by_one, x, "deeplift", objective).heatmaps, events[-1].heatmaps,
                               rtol=1e-5, atol=1e-6)


def test_baselines_are_seeded_and_bad_ones_are_rejected_by_name():
    classifier = OnnxClassifier(builders.small_cnn())
    x = RNG.standard_normal((3, 16, 16)).astype(np.float32)
    objective = Objective.for_classes([1], 3)
    noisy = [explain_once(classifier, x, "deeplift", objective, {"baseline": "uniform_noise"}, seed=s).heatmaps
             for s in (1, 1, 2)]
    np.testing.assert_array_equal(noisy[0], noisy[1])
    assert not np.allclose(noisy[0], noisy[2])
    with pytest.raises(InvalidArgument, match="required") as info:
        explain_once(classifier, x, "deeplift", objective, {"baseline": "tensor"})
    assert info.value.field == "params.baseline_tensor"
    with pytest.raises(InvalidArgument) as info:
        explain_once(classifier, x, "deeplift", objective, {"baseline": "tensor", "baseline_tensor": np.zeros((3, 8, 8))})
    assert info.value.field == "params.baseline_tensor"
    with pytest.raises(InvalidArgument, match="only used"):
        explain_once(classifier, x, "deeplift", objective, {"baseline_tensor": np.zeros((3, 16, 16))})


# ---------------------------------------------------------------------- a literal re-implementation
def _gated_relu_net(seed: int = 0) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """x [N, 2, 5, 5] → Conv 3×3 (pad 1, bias) → Relu → MaxPool 3×3/2 (pad 1, overlapping) → Flatten
    → Gemm → h·Sigmoid(h) (a product of two input-dependent tensors) → Gemm → logits [N, 3]."""
    rng = np.random.default_rng(seed)
    weights = {
        "cw": rng.standard_normal((3, 2, 3, 3)), "cb": rng.standard_normal(3) * 0.3,
        "w1": rng.standard_normal((4, 27)) * 0.4, "b1": rng.standard_normal(4) * 0.3,
        "w2": rng.standard_normal((3, 4)), "b2": rng.standard_normal(3) * 0.1,
    }
    weights = {k: v.astype(np.float32) for k, v in weights.items()}
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["conv"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["act"]),
        helper.make_node("MaxPool", ["act"], ["pool"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w1", "b1"], ["h"], transB=1),
        helper.make_node("Sigmoid", ["h"], ["gate"]),
        helper.make_node("Mul", ["h", "gate"], ["silu"]),
        helper.make_node("Gemm", ["silu", "w2", "b2"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "gated", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 5, 5])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, {k: v.astype(np.float64) for k, v in weights.items()}


def _forward(x: np.ndarray, w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    conv = np.zeros((3, 5, 5))
    for k in range(3):
        for i in range(5):
            for j in range(5):
                conv[k, i, j] = w["cb"][k] + (w["cw"][k] * padded[:, i:i + 3, j:j + 3]).sum()
    act = np.maximum(conv, 0)
    pool, winner = np.zeros((3, 3, 3)), np.zeros((3, 3, 3, 2), int)
    for c in range(3):
        for i in range(3):
            for j in range(3):
                rows, cols = range(max(0, 2 * i - 1), min(5, 2 * i + 2)), range(max(0, 2 * j - 1), min(5, 2 * j + 2))
                best = max(((r, s) for r in rows for s in cols), key=lambda rs: act[c, rs[0], rs[1]])
                pool[c, i, j], winner[c, i, j] = act[c, best[0], best[1]], best
    h = w["w1"] @ pool.ravel() + w["b1"]
    gate = 1 / (1 + np.exp(-h))
    return {"conv": conv, "act": act, "pool": pool, "winner": winner, "h": h, "gate": gate,
            "logits": w["w2"] @ (h * gate) + w["b2"]}


def _deeplift(x: np.ndarray, x_ref: np.ndarray, seed: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    """Multipliers of Σ seed ⊙ logits w.r.t. x, backpropagated rule by rule with explicit loops."""
    a, r = _forward(x, w), _forward(x_ref, w)
    m_silu = w["w2"].T @ seed
    m_h = m_silu * (a["gate"] + r["gate"]) / 2  # product: the other factor at its midpoint
    m_gate = m_silu * (a["h"] + r["h"]) / 2
    m_h += m_gate * (a["gate"] - r["gate"]) / (a["h"] - r["h"])  # rescale through the sigmoid
    m_pool = (w["w1"].T @ m_h).reshape(3, 3, 3)
    routed = np.zeros((3, 5, 5))
    for c in range(3):
        for i in range(3):
            for j in range(3):  # Captum: (max(y, y′) − y′) to x's winner, (y − max(y, y′)) to x′'s
                top = max(a["pool"][c, i, j], r["pool"][c, i, j])
                routed[c][tuple(a["winner"][c, i, j])] += m_pool[c, i, j] * (top - r["pool"][c, i, j])
                routed[c][tuple(r["winner"][c, i, j])] += m_pool[c, i, j] * (a["pool"][c, i, j] - top)
    delta_act = a["act"] - r["act"]
    m_act = np.divide(routed, delta_act, out=np.zeros_like(routed), where=delta_act != 0)
    delta_conv = a["conv"] - r["conv"]
    relu_slope = np.divide(delta_act, delta_conv, out=(a["conv"] > 0).astype(float), where=delta_conv != 0)
    m_conv = m_act * relu_slope
    m_padded = np.zeros((2, 7, 7))
    for k in range(3):
        for i in range(5):
            for j in range(5):
                m_padded[:, i:i + 3, j:j + 3] += w["cw"][k] * m_conv[k, i, j]
    return m_padded[:, 1:-1, 1:-1]


@pytest.mark.parametrize("baseline", ["zero", "tensor"])
def test_agrees_with_a_literal_numpy_reimplementation(baseline):
    model, weights = _gated_relu_net()
    classifier = OnnxClassifier(model)
    x = RNG.standard_normal((2, 5, 5)).astype(np.float32)
    x_ref = np.zeros_like(x) if baseline == "zero" else (0.5 * RNG.standard_normal((2, 5, 5))).astype(np.float32)
    objective = Objective.for_classes([0, 2], 3, contrast=1)
    params = {"baseline": baseline, "baseline_tensor": x_ref} if baseline == "tensor" else {}
    result = explain_once(classifier, x, "deeplift", objective, params)
    x64, ref64 = x.astype(np.float64), x_ref.astype(np.float64)
    for t in range(2):
        expected = ((x64 - ref64) * _deeplift(x64, ref64, objective.weights[t].astype(np.float64), weights)).sum(axis=0)
        np.testing.assert_allclose(result.heatmaps[t], expected, rtol=1e-4, atol=1e-5)
        delta = (_forward(x64, weights)["logits"] - _forward(ref64, weights)["logits"]) @ objective.weights[t]
        np.testing.assert_allclose(expected.sum(), delta, rtol=1e-9)  # the re-implementation is complete too
    assert result.extras["completeness_gap_relative"] < 1e-5


# ---------------------------------------------------------------------- one row per rule
def _op_model(nodes: list, opset: int = 17, initializers: tuple = ()) -> onnx.ModelProto:
    """x [N, 3, 4, 4] → ``nodes`` (ending in tensor "y") → Flatten → out [N, features]."""
    graph = helper.make_graph(
        [*nodes, helper.make_node("Flatten", ["y"], ["out"])], "op",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", None])],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in initializers])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    return model


def _unary(op: str, **attributes) -> list:
    return [helper.make_node(op, ["x"], ["y"], **attributes)]


def _positive(op: str) -> list:  # Log, Sqrt, Reciprocal: on |x| + ½
    return [helper.make_node("Abs", ["x"], ["a"]), helper.make_node("Add", ["a", "half"], ["p"]),
            helper.make_node(op, ["p"], ["y"])]


RULE_TABLE = {
    "Relu": (_unary("Relu"), 17, ()),
    "Clip (ReLU6)": ([helper.make_node("Clip", ["x", "zero", "six"], ["y"])], 17, (("zero", 0.0), ("six", 0.6))),
    "Abs": (_unary("Abs"), 17, ()),
    "Sigmoid": (_unary("Sigmoid"), 17, ()),
    "Tanh": (_unary("Tanh"), 17, ()),
    "Softplus": (_unary("Softplus"), 17, ()),
    "Elu": (_unary("Elu", alpha=0.7), 17, ()),
    "Selu": (_unary("Selu"), 17, ()),
    "LeakyRelu": (_unary("LeakyRelu", alpha=0.1), 17, ()),
    "PRelu": ([helper.make_node("PRelu", ["x", "slope"], ["y"])], 17, (("slope", [[[0.2]], [[-0.3]], [[0.5]]]),)),
    "HardSwish": (_unary("HardSwish"), 17, ()),
    "HardSigmoid": (_unary("HardSigmoid", alpha=0.3), 17, ()),
    "Gelu": (_unary("Gelu"), 20, ()),
    "Gelu tanh": (_unary("Gelu", approximate="tanh"), 20, ()),
    "Mish": (_unary("Mish"), 18, ()),
    "Erf": (_unary("Erf"), 17, ()),
    "Exp": (_unary("Exp"), 17, ()),
    "Pow 3": ([helper.make_node("Pow", ["x", "three"], ["y"])], 17, (("three", 3.0),)),
    "Log": (_positive("Log"), 17, (("half", 0.5),)),
    "Sqrt": (_positive("Sqrt"), 17, (("half", 0.5),)),
    "Reciprocal": (_positive("Reciprocal"), 17, (("half", 0.5),)),
    "MaxPool 3x3/1 overlapping": (_unary("MaxPool", kernel_shape=[3, 3], pads=[1, 1, 1, 1]), 17, ()),
    "MaxPool 2x2/2 ceil": (_unary("MaxPool", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1), 17, ()),
    "Mul x·tanh(x)": ([helper.make_node("Tanh", ["x"], ["t"]), helper.make_node("Mul", ["x", "t"], ["y"])], 17, ()),
    "Div x/(1 + x²)": ([helper.make_node("Mul", ["x", "x"], ["s"]), helper.make_node("Add", ["s", "one"], ["d"]),
                        helper.make_node("Div", ["x", "d"], ["y"])], 17, (("one", 1.0),)),
    "Div 1/(1 + x²)": ([helper.make_node("Mul", ["x", "x"], ["s"]), helper.make_node("Add", ["s", "one"], ["d"]),
                        helper.make_node("Div", ["one", "d"], ["y"])], 17, (("one", 1.0),)),
    "MatMul x·xᵀ": ([helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 1, 3, 2]),
                     helper.make_node("MatMul", ["x", "xt"], ["y"])], 17, ()),
    "Einsum x·xᵀ": ([helper.make_node("Einsum", ["x", "x"], ["y"], equation="ncij,nckj->ncik")], 17, ()),
    "LayerNormalization": ([helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["y"], axis=-2)], 17,
                           (("gamma", np.linspace(0.5, 2, 16).reshape(4, 4)), ("beta", np.ones((4, 4))))),
    "Softmax": (_unary("Softmax", axis=1), 17, ()),
}


@pytest.mark.parametrize("case", list(RULE_TABLE))
def test_each_rule_sums_to_delta_and_tends_to_the_gradient(case):
    """Exact summation-to-delta for every op of the rule set, and multipliers → the gradient as
    x′ → x (equal to it at x′ = x, where the rules fall back to the derivative)."""
    import onnxruntime as ort

    from onnxplain.explainers.autodiff import BASELINE_INPUT, CLASS_WEIGHTS, INPUT_GRAD, build_gradient_model

    nodes, opset, initializers = RULE_TABLE[case]
    model = _op_model(nodes, opset, initializers)
    run = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run
    rescale = build_gradient_model(model, rules="deeplift_rescale", baseline_pass=True).model
    multipliers = ort.InferenceSession(rescale.SerializeToString(), providers=["CPUExecutionProvider"]).run
    gradient = build_gradient_model(model).model
    vanilla = ort.InferenceSession(gradient.SerializeToString(), providers=["CPUExecutionProvider"]).run
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 3, 4, 4)).astype(np.float32)
    seeds = rng.standard_normal(run(None, {"x": x})[0].shape).astype(np.float32)
    for x_ref in (rng.standard_normal(x.shape).astype(np.float32), np.zeros_like(x)):
        (m,) = multipliers([INPUT_GRAD], {"x": x, BASELINE_INPUT: x_ref, CLASS_WEIGHTS: seeds})
        delta = ((run(None, {"x": x})[0] - run(None, {"x": x_ref})[0]).astype(np.float64) * seeds).sum(axis=1)
        total = ((x - x_ref).astype(np.float64) * m).reshape(3, -1).sum(axis=1)
        np.testing.assert_allclose(total, delta, rtol=1e-4, atol=1e-4 * np.abs(delta).max())
    (g,) = vanilla([INPUT_GRAD], {"x": x, CLASS_WEIGHTS: seeds})
    (at_x,) = multipliers([INPUT_GRAD], {"x": x, BASELINE_INPUT: x, CLASS_WEIGHTS: seeds})
    np.testing.assert_allclose(at_x, g, rtol=1e-5, atol=1e-5)
    near = x + (1e-3 * rng.standard_normal(x.shape)).astype(np.float32)
    (close,) = multipliers([INPUT_GRAD], {"x": x, BASELINE_INPUT: near, CLASS_WEIGHTS: seeds})
    assert np.abs(close - g).max() <= 0.05 * np.abs(g).max(), np.abs(close - g).max()


# ---------------------------------------------------------------- Captum
@pytest.fixture(scope="module")
def captum():
    """A ReLU/MaxPool CNN and Captum's DeepLift of it (tools/fixtures/golden_captum_relu.py)."""
    data = np.load(FIXTURES / "captum_relu_golden.npz")
    return OnnxClassifier.load(FIXTURES / "captum_relu_model.onnx"), {key: data[key] for key in data.files}


@pytest.mark.parametrize("reference", ["zero", "tensor"])
@pytest.mark.parametrize("image", [0, 1])
def test_agrees_with_captum_rescale_and_max_pool_rules(captum, reference, image):
    """Rescale at every ReLU and Captum's MaxPool rule where x and x′ pick different elements."""
    classifier, golden = captum
    params = {"baseline": reference}
    if reference == "tensor":
        params["baseline_tensor"] = golden["baseline"][image]
    result = explain_once(classifier, golden["x"][image], "deeplift",
                          Objective.for_classes([int(golden["targets"][image])], 5), params)
    expected = golden[f"deeplift_{reference}"][image].sum(axis=0)
    np.testing.assert_allclose(result.heatmaps[0], expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    assert result.extras["completeness_gap_relative"] < 1e-4
