"""Rule table: elementwise math, activations and softmax (checked against finite differences).

Inputs stay away from kinks (Case.make_x): positive for Log/Sqrt/Pow bases, off the HardSwish,
HardSigmoid and Clip corners, off integers for Floor/Ceil/Round. The conventions *at* the kinks
(torch's) and the guided-backprop / DeconvNet Clip overrides are checked literally below.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from gradcheck import Case, build_model, case_input, check, finite_difference
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from onnxplain.explainers.autodiff import (
    CLASS_WEIGHTS,
    INPUT_GRAD,
    GradientError,
    VjpContext,
    build_gradient_model,
    rule_set,
)

R = np.random.default_rng(11)


def away(shape, *kinks, lo=-4.0, hi=4.0, margin=0.25):
    """Uniform inputs in [lo, hi] pushed at least ``margin`` away from each kink."""

    def make(rng):
        values = rng.uniform(lo, hi, size=shape)
        for kink in kinks:
            near = np.abs(values - kink) < margin
            values[near] = kink + np.where(values[near] >= kink, margin, -margin)
        return values

    return make


def positive(shape, lo=0.5, hi=2.5):
    return lambda rng: rng.uniform(lo, hi, size=shape)


def nonzero(shape, lo=0.5, hi=2.0):
    return lambda rng: rng.uniform(lo, hi, size=shape) * rng.choice([-1.0, 1.0], size=shape)


def off_integers(shape):
    """k + [0.1, 0.4] or k + [0.6, 0.9]: away from integers and half-integers."""
    return lambda rng: rng.integers(-3, 3, size=shape) + rng.choice([0.25, 0.75], size=shape) + rng.uniform(
        -0.15, 0.15, size=shape)


POS = R.uniform(0.5, 2.0, size=(3, 1))  # positive divisors / bases
S4 = (2, 3, 4)

ELEMENTWISE = [
    Case("Div by broadcast constant", "y = Div(x, b)", S4, {"b": POS}),
    Case("Div constant by broadcast x opset14", "y = Div(c, x)", (3, 1), {"c": R.standard_normal(S4)},
         opset=14, make_x=nonzero((3, 1))),
    Case("Div both operands opset13", "t = Add(x, c)\n y = Div(x, t)", (2, 3), {"c": np.full((1, 3), 5.0)},
         opset=13, make_x=away((2, 3), lo=-1, hi=1)),
    Case("Div rank-expanding divisor", "y = Div(x, b)", (4,), {"b": R.uniform(1, 2, size=(2, 3, 4))}),
    Case("Neg", "y = Neg(x)", (2, 3)),
    Case("Abs", "y = Abs(x)", (2, 5), make_x=nonzero((2, 5))),
    Case("Exp", "y = Exp(x)", (2, 3, 2)),
    Case("Log", "y = Log(x)", (2, 4), make_x=positive((2, 4))),
    Case("Pow constant 3 on signed base", "y = Pow(x, e)", (2, 4), {"e": np.array(3.0)}, opset=13),
    Case("Pow int64 exponent 2 opset15", "y = Pow(x, e)", (2, 4), {"e": np.array(2, np.int64)}, opset=15),
    Case("Pow constant 1", "y = Pow(x, e)", (3,), {"e": np.array(1.0)}),
    Case("Pow constant vector exponent", "y = Pow(x, e)", (2, 3), {"e": np.array([0.5, 1.5, 2.5])},
         make_x=positive((2, 3))),
    Case("Pow constant base, exponent x broadcast", "y = Pow(b, x)", (3, 1), {"b": R.uniform(0.5, 3, size=S4)},
         make_x=away((3, 1), lo=-1, hi=1)),
    Case("Pow x to the x", "y = Pow(x, x)", (2, 3), make_x=positive((2, 3))),
    Case("Pow computed int exponent", "e = Cast <to = 7> (k)\n y = Pow(x, e)", (2, 3),
         {"k": np.array([2.0, 3.0, 1.0])}),
    Case("Pow computed exponent opset18", "e = Mul(x, c)\n y = Pow(p, e)", (2, 3),
         {"c": np.array([0.5]), "p": R.uniform(0.5, 3, size=(2, 3))}, opset=18),
    Case("Sqrt", "y = Sqrt(x)", (2, 4), make_x=positive((2, 4))),
    Case("Reciprocal", "y = Reciprocal(x)", (2, 4), make_x=nonzero((2, 4))),
    Case("Erf", "y = Erf(x)", (2, 5)),
    Case("Where broadcast branches opset16", "y = Where(c, x, b)", (3, 1),
         {"c": R.random((2, 1, 4)) > 0.5, "b": R.standard_normal(4)}, opset=16),
    Case("Where both branches from x opset13", "m = Greater(x, z)\n s = Mul(x, x)\n y = Where(m, s, x)", S4,
         {"z": np.array(0.0)}, opset=13),
    Case("Where x as else-branch", "y = Where(c, b, x)", (2, 3, 4),
         {"c": R.random((3, 4)) > 0.5, "b": R.standard_normal((1, 4))}, opset=21),
    Case("Cast to double and back opset19", "t = Cast <to = 11> (x)\n u = Mul(t, t)\n y = CastLike(u, x)", (2, 3),
         opset=19),
    Case("Cast to double and back opset21", "t = Cast <to = 11> (x)\n x2 = Cast <to = 11> (x)\n u = Mul(t, x2)\n"
         " y = CastLike(u, x)", (2, 3), opset=21),
    Case("Cast to int is non-differentiable", "i = Cast <to = 7> (x)\n f = CastLike(i, x)\n y = Add(x, f)", (2, 3),
         make_x=off_integers((2, 3)), opset=15),
    Case("Dropout default opset13", "y = Dropout(x)", (2, 3), opset=13),
    Case("Dropout ratio, training_mode false, mask", "y, m = Dropout(x, r, t)", (2, 3),
         {"r": np.array(0.3), "t": np.array(False)}, opset=13),
    Case("Dropout opset22", "y, m = Dropout(x, r)", (2, 3), {"r": np.array(0.5)}, opset=22),
    Case("Sum variadic broadcast", "y = Sum(x, b, x)", S4, {"b": R.standard_normal((3, 1))}),
    Case("Sum single", "y = Sum(x)", (2, 3)),
    Case("Sum x broadcast up", "y = Sum(x, c)", (3, 1), {"c": R.standard_normal(S4)}, opset=13),
    Case("Mean variadic broadcast", "y = Mean(x, c, x)", (2, 3), {"c": R.standard_normal(3)}),
    Case("Max with broadcast constant", "y = Max(x, c)", S4, {"c": R.standard_normal((3, 1))}),
    Case("Max variadic", "y = Max(x, c, d)", (2, 3), {"c": R.standard_normal(3), "d": R.standard_normal((2, 1))},
         opset=13),
    Case("Max tie with itself", "y = Max(x, x)", (2, 3)),
    Case("Max single", "y = Max(x)", (2, 3)),
    Case("Max x broadcast up", "y = Max(x, c)", (3, 1), {"c": R.standard_normal(S4)}),
    Case("Min with broadcast constant", "y = Min(x, c)", S4, {"c": R.standard_normal(4)}, opset=13),
    Case("Min variadic from x", "n = Neg(x)\n y = Min(x, n, c)", (2, 3), {"c": np.full(3, 0.5)}),
    Case("Sign Floor Ceil Round carry no gradient",
         "f = Floor(x)\n a = Mul(x, f)\n c = Ceil(x)\n b = Mul(x, c)\n r = Round(x)\n d = Mul(x, r)\n"
         " s = Sign(x)\n e = Mul(x, s)\n y = Sum(a, b, d, e)", (2, 4), make_x=off_integers((2, 4)), opset=13),
]

ACTIVATIONS = [
    Case("LeakyRelu default", "y = LeakyRelu(x)", (2, 3, 2), opset=13),
    Case("LeakyRelu alpha", "y = LeakyRelu <alpha = 0.2> (x)", (2, 5)),
    Case("PRelu channel slope", "y = PRelu(x, s)", (2, 3, 2, 2), {"s": R.uniform(0.1, 0.5, size=(3, 1, 1))}),
    Case("PRelu scalar slope opset16", "y = PRelu(x, s)", (2, 5), {"s": np.array([0.25])}, opset=16),
    Case("PRelu slope from x", "s = Mul(x, c)\n y = PRelu(x, s)", (2, 4), {"c": R.uniform(0.1, 0.5, size=4)}),
    Case("Elu default", "y = Elu(x)", (2, 4), opset=13),
    Case("Elu alpha", "y = Elu <alpha = 0.5> (x)", (2, 4)),
    Case("Selu default", "y = Selu(x)", (2, 4)),
    Case("Selu alpha gamma", "y = Selu <alpha = 2.0, gamma = 0.5> (x)", (2, 4), opset=13),
    Case("Softplus", "y = Softplus(x)", (2, 4)),
    Case("Gelu none opset20", "y = Gelu(x)", (2, 5), opset=20),
    Case("Gelu tanh opset20", "y = Gelu <approximate = \"tanh\"> (x)", (2, 5), opset=20),
    Case("Gelu none opset21", "y = Gelu <approximate = \"none\"> (x)", (3, 2), opset=21),
    Case("Mish opset18", "y = Mish(x)", (2, 5), opset=18),
    Case("Sigmoid", "y = Sigmoid(x)", (2, 4), opset=13),
    Case("Tanh", "y = Tanh(x)", (2, 4)),
    Case("HardSigmoid default", "y = HardSigmoid(x)", (3, 4), make_x=away((3, 4), -2.5, 2.5)),
    Case("HardSigmoid torch alpha beta", "y = HardSigmoid <alpha = 0.16666667, beta = 0.5> (x)", (3, 4),
         make_x=away((3, 4), -3.0, 3.0, lo=-5, hi=5), opset=13),
    Case("HardSigmoid alpha beta", "y = HardSigmoid <alpha = 0.5, beta = 0.3> (x)", (3, 4),
         make_x=away((3, 4), -0.6, 1.4, lo=-2, hi=3)),
    Case("HardSwish opset14", "y = HardSwish(x)", (3, 4), make_x=away((3, 4), -3.0, 3.0, lo=-5, hi=5), opset=14),
    Case("HardSwish", "y = HardSwish(x)", (2, 2, 3), make_x=away((2, 2, 3), -3.0, 3.0, lo=-5, hi=5)),
    Case("Clip relu6 initializers", "y = Clip(x, lo, hi)", (3, 4), {"lo": np.array(0.0), "hi": np.array(6.0)},
         make_x=away((3, 4), 0.0, 6.0, lo=-2, hi=8)),
    Case("Clip opset13", "y = Clip(x, lo, hi)", (3, 4), {"lo": np.array(-0.5), "hi": np.array(0.5)},
         make_x=away((3, 4), -0.5, 0.5, lo=-1, hi=1), opset=13),
    Case("Clip max only", "y = Clip(x, , hi)", (3, 4), {"hi": np.array(0.3)}, make_x=away((3, 4), 0.3)),
    Case("Clip min only", "y = Clip(x, lo)", (3, 4), {"lo": np.array(-0.3)}, make_x=away((3, 4), -0.3)),
    Case("Clip no bounds", "y = Clip(x)", (2, 3)),
    Case("Clip bounds from the input", "lo = Reshape(x, shape)\n y = Clip(v, lo, hi)", (1,),
         {"shape": np.zeros(0, np.int64), "v": np.linspace(-1.9, 1.9, 8).reshape(2, 4) + 0.05,
          "hi": np.array(1.0)}, make_x=lambda rng: np.array([0.1])),
]

SOFTMAX = [
    Case("Softmax default axis opset13", "y = Softmax(x)", S4, opset=13),
    Case("Softmax axis 1", "y = Softmax <axis = 1> (x)", S4),
    Case("Softmax axis -2 opset18", "y = Softmax <axis = -2> (x)", S4, opset=18),
    Case("Softmax axis 0 opset21", "y = Softmax <axis = 0> (x)", S4, opset=21),
    Case("LogSoftmax default axis opset13", "y = LogSoftmax(x)", S4, opset=13),
    Case("LogSoftmax axis 1", "y = LogSoftmax <axis = 1> (x)", S4),
    Case("LogSoftmax axis -3", "y = LogSoftmax <axis = -3> (x)", S4, opset=21),
    Case("Softmax then Log chain", "s = Softmax <axis = -1> (x)\n y = Log(s)", (2, 5)),
]

CASES = ELEMENTWISE + ACTIVATIONS + SOFTMAX


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_rule_matches_finite_differences(case):
    check(case)


# ---------------------------------------------------------------------- conventions at kinks
def _gradients(case: Case, x: np.ndarray, weights: np.ndarray, rules: str = "vanilla") -> list[np.ndarray]:
    """The input gradient from the float64 reference evaluator and from onnxruntime in float32."""
    gradient = build_gradient_model(build_model(case), rules=rules).model
    got64 = ReferenceEvaluator(gradient).run([INPUT_GRAD], {"x": x, CLASS_WEIGHTS: weights})[0]
    gradient32 = build_gradient_model(build_model(case, np.float32), rules=rules).model
    session = ort.InferenceSession(gradient32.SerializeToString(), providers=["CPUExecutionProvider"])
    got32 = session.run([INPUT_GRAD], {"x": x.astype(np.float32), CLASS_WEIGHTS: weights.astype(np.float32)})[0]
    return [got64, got32]


KINKS = np.array([[-4.0, -3.0, -1.5, 0.0, 1.5, 3.0, 4.0, 6.0]])


@pytest.mark.parametrize(("body", "inits", "local"), [
    # torch ≥ 2.7: 0 for x ≤ −3 (so 0, not −½, at −3), (2x + 3)/6 inside, 1 for x ≥ 3 (1, not 3/2, at 3)
    ("y = HardSwish(x)", {}, np.where(KINKS <= -3, 0, np.where(KINKS < 3, (2 * KINKS + 3) / 6, 1))),
    ("y = HardSigmoid <alpha = 0.16666667, beta = 0.5> (x)", {}, np.where(np.abs(KINKS) < 3, 1 / 6, 0)),
    ("y = Clip(x, lo, hi)", {"lo": np.array(0.0), "hi": np.array(6.0)}, ((KINKS > 0) & (KINKS < 6)) * 1.0),
    ("y = Relu(x)", {}, (KINKS > 0) * 1.0),
    ("y = LeakyRelu <alpha = 0.1> (x)", {}, np.where(KINKS > 0, 1, 0.1)),
    ("y = Abs(x)", {}, np.sign(KINKS)),
], ids=["HardSwish", "HardSigmoid", "Clip", "Relu", "LeakyRelu", "Abs"])
def test_gradient_at_kinks_follows_torch(body, inits, local):
    case = Case("kinks", body, KINKS.shape, inits)
    weights = np.random.default_rng(5).standard_normal(KINKS.shape)
    for got in _gradients(case, KINKS.copy(), weights):
        np.testing.assert_allclose(got, weights * local, rtol=1e-6, atol=1e-6)


def test_max_min_split_ties_evenly():
    x = np.array([[1.0, 2.0, 3.0, -1.0]])
    c = np.array([[1.0, 0.0, 3.0, -1.0]])  # ties at 0, 2, 3
    weights = np.array([[1.0, 2.0, 3.0, 4.0]])
    for op, wins in [("Max", x > c), ("Min", x < c)]:
        case = Case(op, f"y = {op}(x, c)", x.shape, {"c": c})
        expected = weights * (wins + 0.5 * (x == c))
        for got in _gradients(case, x, weights):
            np.testing.assert_allclose(got, expected, rtol=1e-6)
    three = Case("Max3", "y = Max(x, c, c)", x.shape, {"c": c})  # three-way tie: a third each
    for got in _gradients(three, x, weights):
        np.testing.assert_allclose(got, weights * ((x > c) + (x == c) / 3), rtol=1e-6)


# ---------------------------------------------------------------------- models below opset 13, upgraded by the builder
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_pre_opset13_softmax_coerced_to_2d(op):
    """Softmax-11 normalises over all axes from ``axis`` on (the input coerced to 2-D); the version
    converter rewrites it as Flatten → Softmax → Reshape. onnx.reference runs Softmax-11 with the
    opset-13 meaning, so the finite differences come from the converted forward (which onnxruntime
    agrees with)."""
    case = Case(op, f"y = {op} <axis = 1> (x)", S4, opset=11)
    model = build_model(case)
    x = case_input(case)
    weights = np.random.default_rng(1).standard_normal((2, 12))
    expected = finite_difference(onnx.version_converter.convert_version(model, 16), x, weights)
    got64, got32 = _gradients(case, x, weights)
    np.testing.assert_allclose(got64, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got32, expected, rtol=2e-3, atol=2e-4)


def test_clip_with_attribute_bounds_opset10():
    """Clip-6 takes min/max as attributes; the version converter turns them into float constants,
    so this only runs in float32 (in float64 the converted graph mixes double and float)."""
    case = Case("Clip-6", "y = Clip <min = -0.5, max = 0.5> (x)", (3, 4), opset=10)
    x = away((3, 4), -0.5, 0.5, lo=-1, hi=1)(np.random.default_rng(0)).astype(np.float32)
    weights = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    gradient = build_gradient_model(build_model(case, np.float32)).model
    session = ort.InferenceSession(gradient.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run([INPUT_GRAD], {"x": x, CLASS_WEIGHTS: weights})[0]
    np.testing.assert_array_equal(got, np.where(np.abs(x) < 0.5, weights, 0))


# ---------------------------------------------------------------------- guided backprop / DeconvNet Clip
RELU6 = Case("ReLU6", "y = Clip(x, lo, hi)", (3, 6), {"lo": np.array(0.0), "hi": np.array(6.0)},
             make_x=away((3, 6), 0.0, 6.0, lo=-3, hi=9))


@pytest.mark.parametrize("rules", ["vanilla", "guided_backprop", "deconvnet"])
def test_relu6_clip_overrides_match_literal_definitions(rules):
    x = case_input(RELU6)
    weights = np.random.default_rng(3).standard_normal(x.shape)  # the upstream gradient of y
    inside = (x > 0) & (x < 6)
    expected = {
        "vanilla": np.where(inside, weights, 0),
        "guided_backprop": np.where(inside & (weights > 0), weights, 0),
        "deconvnet": np.maximum(weights, 0),
    }[rules]
    assert inside.any() and (x >= 6).any() and (x <= 0).any()
    for got in _gradients(RELU6, x, weights, rules):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_relu6_override_sees_constant_node_bounds():
    """torch exports ReLU6 bounds as Constant nodes as often as initializers."""
    low = helper.make_node("Constant", [], ["lo"], value=numpy_helper.from_array(np.array(0.0, np.float32)))
    high = helper.make_node("Constant", [], ["hi"], value=numpy_helper.from_array(np.array(6.0, np.float32)))
    clip = helper.make_node("Clip", ["x", "lo", "hi"], ["y"])
    graph = helper.make_graph([low, high, clip], "relu6", [helper.make_tensor_value_info("x", 1, [2, 5])],
                              [helper.make_tensor_value_info("y", 1, [2, 5])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.linspace(-2, 8, 10, dtype=np.float32).reshape(2, 5)
    weights = np.random.default_rng(2).standard_normal((2, 5)).astype(np.float32)
    for rules, expected in [("guided_backprop", np.where((x > 0) & (x < 6) & (weights > 0), weights, 0)),
                            ("deconvnet", np.maximum(weights, 0))]:
        gradient = build_gradient_model(model, rules=rules).model
        session = ort.InferenceSession(gradient.SerializeToString(), providers=["CPUExecutionProvider"])
        got = session.run([INPUT_GRAD], {"x": x, CLASS_WEIGHTS: weights})[0]
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("rules", ["guided_backprop", "deconvnet"])
def test_non_relu6_clip_keeps_vanilla_rule_under_overrides(rules):
    case = Case("Clip", "y = Clip(x, lo, hi)", (2, 6), {"lo": np.array(-1.0), "hi": np.array(1.0)},
                make_x=away((2, 6), -1.0, 1.0, lo=-2, hi=2))
    x = case_input(case)
    weights = np.random.default_rng(4).standard_normal(x.shape)
    for got in _gradients(case, x, weights, rules):
        np.testing.assert_allclose(got, np.where(np.abs(x) < 1, weights, 0), rtol=1e-6)


def test_overrides_are_registered_for_clip():
    vanilla = rule_set("vanilla")["Clip"]
    assert rule_set("guided_backprop")["Clip"] is not vanilla
    assert rule_set("deconvnet")["Clip"] is not vanilla


# ---------------------------------------------------------------------- non-differentiable paths
def _context(**dtypes) -> VjpContext:
    return VjpContext(shapes={}, dtypes={k: np.dtype(v) for k, v in dtypes.items()}, opset=17,
                      default_dtype=np.dtype(np.float32), constants={}, differentiable=set(dtypes))


@pytest.mark.parametrize("to", [onnx.TensorProto.INT64, onnx.TensorProto.BOOL, onnx.TensorProto.INT8])
def test_cast_to_non_float_has_no_gradient(to):
    ctx = _context(x="float32", y="float32")
    node = helper.make_node("Cast", ["x"], ["y"], to=to)
    assert rule_set()["Cast"](ctx, node, ["g"]) == [None]
    assert ctx.nodes == []


def test_cast_float_to_float_casts_back():
    ctx = _context(x="float32", y="float16")
    node = helper.make_node("Cast", ["x"], ["y"], to=onnx.TensorProto.FLOAT16)
    (grad,) = rule_set()["Cast"](ctx, node, ["g"])
    assert [n.op_type for n in ctx.nodes] == ["CastLike"] and list(ctx.nodes[0].input) == ["g", "x"]
    same = _context(x="float32", y="float32")
    assert rule_set()["Cast"](same, helper.make_node("Cast", ["x"], ["y"], to=1), ["g"]) == ["g"]


@pytest.mark.parametrize("op", ["Sign", "Floor", "Ceil", "Round"])
def test_piecewise_constant_ops_have_no_gradient(op):
    ctx = _context(x="float32", y="float32")
    assert rule_set()[op](ctx, helper.make_node(op, ["x"], ["y"]), ["g"]) == [None]


def test_piecewise_constant_alone_reaches_no_input():
    with pytest.raises(GradientError, match="no gradient reaches"):
        build_gradient_model(build_model(Case("Floor", "y = Floor(x)", (2, 3))))


@pytest.mark.parametrize("training", ["constant", "input"])
def test_dropout_in_training_mode_is_refused(training):
    case = Case("Dropout", "y = Dropout(x, r, t)", (2, 3), {"r": np.array(0.5), "t": np.array(True)})
    model = build_model(case)
    if training == "input":
        del model.graph.initializer[-1]
        model.graph.input.append(helper.make_tensor_value_info("t", onnx.TensorProto.BOOL, []))
    with pytest.raises(GradientError, match="training mode"):
        build_gradient_model(model)
