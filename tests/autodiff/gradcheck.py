"""Check gradient rules against central finite differences in float64.

A :class:`Case` is a tiny model written in ONNX text: statements that read the input ``x`` (and
named initializers) and define ``y``. The harness appends ``score = Flatten<axis=1>(y)``, builds the
gradient model, and compares ``d Σ(score ⊙ w) / dx`` from

* ``onnx.reference.ReferenceEvaluator`` in float64 with central finite differences (tight), and
* onnxruntime in float32 (it lacks float64 kernels for Conv and friends) with a looser tolerance,
  which also proves that onnxruntime accepts every op a rule emits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from onnxplain.explainers.autodiff import CLASS_WEIGHTS, INPUT_GRAD, build_gradient_model

_TYPE = {np.float64: "double", np.float32: "float"}


@dataclass(frozen=True)
class Case:
    """One row of a rule table.

    Attributes:
        id: test id.
        body: ONNX text statements defining ``y`` from ``x`` and ``inits``.
        x_shape: input shape (keep it small: every element is perturbed twice).
        inits: named initializers; float arrays take the case's dtype.
        opset: default-domain opset of the model.
        make_x: custom input generator ``rng -> array`` (e.g. positive values for Log).
        rules: rule-set name.
        ort: also run the float32 gradient model in onnxruntime.
    """

    id: str
    body: str
    x_shape: tuple[int, ...]
    inits: dict[str, np.ndarray] = field(default_factory=dict)
    opset: int = 17
    make_x: Callable[[np.random.Generator], np.ndarray] | None = None
    rules: str = "vanilla"
    ort: bool = True


def build_model(case: Case, dtype=np.float64) -> onnx.ModelProto:
    dims = ", ".join(str(d) for d in case.x_shape)
    text = f"""
        <ir_version: 8, opset_import: ["" : {case.opset}]>
        case ({_TYPE[dtype]}[{dims}] x) => ({_TYPE[dtype]}[N, K] score) {{
            {case.body}
            score = Flatten <axis = 1> (y)
        }}
    """
    model = onnx.parser.parse_model(text)
    for name, value in case.inits.items():
        value = np.asarray(value)
        if np.issubdtype(value.dtype, np.floating):
            value = value.astype(dtype)
        model.graph.initializer.append(numpy_helper.from_array(value, name))
    onnx.checker.check_model(model, full_check=True)
    return model


def case_input(case: Case, dtype=np.float64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = case.make_x(rng) if case.make_x else rng.standard_normal(case.x_shape)
    return np.asarray(x, dtype=dtype).reshape(case.x_shape)


def finite_difference(model: onnx.ModelProto, x: np.ndarray, weights: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    evaluator = ReferenceEvaluator(model)

    def objective(value: np.ndarray) -> float:
        return float((evaluator.run(["score"], {"x": value})[0] * weights).sum())

    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += eps
        minus[index] -= eps
        grad[index] = (objective(plus) - objective(minus)) / (2 * eps)
    return grad


def check(case: Case, *, rtol: float = 1e-5, ort_rtol: float = 2e-3) -> np.ndarray:
    """Assert the rule's gradient matches finite differences; returns the float64 gradient."""
    model = build_model(case)
    x = case_input(case)
    score = ReferenceEvaluator(model).run(["score"], {"x": x})[0]
    weights = np.random.default_rng(1).standard_normal(score.shape)
    gradient_model = build_gradient_model(model, rules=case.rules).model
    got = ReferenceEvaluator(gradient_model).run([INPUT_GRAD], {"x": x, CLASS_WEIGHTS: weights})[0]
    expected = finite_difference(model, x, weights)
    scale = max(np.abs(expected).max(), 1e-3)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * scale, err_msg=f"{case.id}: float64 reference")
    if case.ort:
        model32 = build_model(case, np.float32)
        gradient32 = build_gradient_model(model32, rules=case.rules).model
        session = ort.InferenceSession(gradient32.SerializeToString(), providers=["CPUExecutionProvider"])
        got32 = session.run([INPUT_GRAD], {"x": x.astype(np.float32), CLASS_WEIGHTS: weights.astype(np.float32)})[0]
        np.testing.assert_allclose(got32, expected, rtol=ort_rtol, atol=ort_rtol * scale,
                                   err_msg=f"{case.id}: onnxruntime float32")
    return got
