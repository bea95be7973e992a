"""Rule table: the core rules every classifier needs (checked against finite differences)."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import Case, check

R = np.random.default_rng(7)

CASES = [
    Case("Add broadcast", "y = Add(x, b)", (2, 3, 4), {"b": R.standard_normal((3, 1))}),
    Case("Add self", "y = Add(x, x)", (2, 5)),
    Case("Sub both sides", "t = Sub(c, x)\n y = Sub(t, x)", (2, 3), {"c": R.standard_normal((1, 3))}),
    Case("Mul broadcast", "y = Mul(x, b)", (2, 3, 2, 2), {"b": R.standard_normal((3, 1, 1))}),
    Case("Mul square", "y = Mul(x, x)", (2, 4)),
    Case("Identity", "y = Identity(x)", (2, 3)),
    Case("Relu", "y = Relu(x)", (2, 3, 3)),
    Case("Gemm", "y = Gemm(x, w, b)", (2, 4), {"w": R.standard_normal((4, 3)), "b": R.standard_normal(3)}),
    Case("Gemm transB alpha beta", "y = Gemm <transB = 1, alpha = 0.5, beta = 2.0> (x, w, b)", (2, 4),
         {"w": R.standard_normal((3, 4)), "b": R.standard_normal((1, 3))}),
    Case("Gemm x as B", "y = Gemm <transB = 1> (w, x)", (2, 4), {"w": R.standard_normal((3, 4))}),
    Case("Reshape", "y = Reshape(x, s)", (2, 3, 4), {"s": np.array([0, -1], np.int64)}),
    Case("Flatten axis 2", "y = Flatten <axis = 2> (x)", (2, 3, 2, 2)),
    Case("Conv", "y = Conv <pads = [1, 1, 1, 1]> (x, w, b)", (2, 2, 5, 5),
         {"w": R.standard_normal((3, 2, 3, 3)), "b": R.standard_normal(3)}),
    Case("GlobalAveragePool", "y = GlobalAveragePool(x)", (2, 3, 3, 4)),
    Case("guided Relu", "y = Relu(x)", (2, 6), rules="guided_backprop"),
    Case("deconvnet Relu", "y = Relu(x)", (2, 6), rules="deconvnet"),
]


@pytest.mark.parametrize("case", [c for c in CASES if c.rules == "vanilla"], ids=lambda c: c.id)
def test_rule_matches_finite_differences(case):
    check(case)


def test_guided_and_deconvnet_relu_match_literal_definitions():
    from gradcheck import build_model, case_input
    from onnx.reference import ReferenceEvaluator

    from onnxplain.explainers.autodiff import CLASS_WEIGHTS, INPUT_GRAD, build_gradient_model

    case = CASES[-1]
    x = case_input(case)
    weights = np.random.default_rng(3).standard_normal((2, 6))  # the upstream gradient of y
    model = build_model(case)
    for rules, expected in [
        ("guided_backprop", np.where((x > 0) & (weights > 0), weights, 0)),
        ("deconvnet", np.maximum(weights, 0)),
        ("vanilla", np.where(x > 0, weights, 0)),
    ]:
        grad = ReferenceEvaluator(build_gradient_model(model, rules=rules).model).run(
            [INPUT_GRAD], {"x": x, CLASS_WEIGHTS: weights})[0]
        np.testing.assert_array_equal(grad, expected)
