"""Which execution providers onnxplain's gradient graphs may run on.

The graphs' ReLU/ReLU6 masks are exact only in IEEE float32 (``autodiff/rules/activations.py``,
``_blocked_window_mask``), and OpenVINO's provider returned gradients off by 10⁶ of their range
(bench/README.md). So a gradient graph runs only on a provider that is both

* listed in :data:`GRADIENT_PROVIDERS` (the CPU provider, which the test suite checks, and CUDA, which
  ``bench/gpu.sh`` compares with the CPU), and
* passes :func:`masks_are_exact` once per process: the mask formulas, built by the same rules, evaluated on
  that provider at the values where a scaled formula could go wrong — so a CUDA build that computed them
  differently is refused, not trusted.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from ..errors import FailedPrecondition

GRADIENT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
"""Execution providers gradient graphs may run on (see the module docstring)."""

KINK_VALUES = np.array([-1.0, -0.0, 0.0, 2.0**-126, 1e-30, 0.5, 3.0, np.nextafter(np.float32(6), np.float32(0)), 6.0,
                        np.nextafter(np.float32(6), np.float32(7)), 7.0, 4.5, 1e30, 3e38, 2.0**-100, 1.0], np.float32)
"""±0, the smallest normal float, the floats next to 6, values whose scaled product overflows."""


def kink_model(activation: str, side: int = 64) -> tuple[onnx.ModelProto, np.ndarray]:
    """x → Conv(identity) → ``activation`` (Relu, or Clip(0, 6)) → Flatten, and its input: KINK_VALUES tiled
    over a ``side``×``side`` map (the vectorised kernels see every value, not only a scalar tail)."""
    bounds = [] if activation == "Relu" else ["lo", "hi"]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[1, 1]),  # identity: y = x exactly
        helper.make_node(activation, ["y", *bounds], ["act"]),
        helper.make_node("Flatten", ["act"], ["logits"]),
    ]
    inits = [numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w"),
             numpy_helper.from_array(np.float32(0), "lo"), numpy_helper.from_array(np.float32(6), "hi")]
    graph = helper.make_graph(nodes, "kinks", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, side, side])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", side * side])], inits)
    values = np.tile(KINK_VALUES.reshape(4, 4), (side // 4, side // 4)).reshape(1, 1, side, side)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), values


def kink_gradient(activation: str, providers: Sequence[str]) -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    """The gradient model of ``kink_model(activation)``, its input gradient (seeded with ones) run on
    ``providers`` as onnxplain's sessions run it (denormals flushed), and the exact answer: [x > 0] for Relu,
    [0 < x < 6] for Clip. Returns (gradient model, gradient, expected), both flat float32."""
    from ..autodiff import CLASS_WEIGHTS, build_gradient_model

    model, values = kink_model(activation)
    built = build_gradient_model(model)
    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    session = ort.InferenceSession(built.model.SerializeToString(), options, providers=list(providers))
    (grad,) = session.run([built.input_grad], {"x": values, CLASS_WEIGHTS: np.ones((1, values.size), np.float32)})
    x = values.ravel()
    expected = (x > 0) if activation == "Relu" else ((x > 0) & (x < 6))
    return built.model, np.asarray(grad).ravel(), expected.astype(np.float32)


@functools.lru_cache(maxsize=8)
def masks_are_exact(providers: tuple[str, ...]) -> bool:
    """Whether :func:`kink_gradient` gives exactly the expected indicators on ``providers``, for Relu and Clip."""
    return all(np.array_equal(*kink_gradient(activation, providers)[1:]) for activation in ("Relu", "Clip"))


def check_gradient_providers(providers: Sequence[str]) -> None:
    """Refuse a gradient graph on ``providers`` (a session's, in order) unless each is in
    :data:`GRADIENT_PROVIDERS` and together they compute the masks exactly.

    Raises:
        FailedPrecondition: names the provider and what is allowed."""
    unchecked = [p for p in providers if p not in GRADIENT_PROVIDERS]
    if unchecked:
        raise FailedPrecondition(
            f"gradient-based methods are not available on {', '.join(unchecked)}: onnxplain's gradient graphs are "
            f"checked on {' and '.join(GRADIENT_PROVIDERS)} only (OpenVINO's returned wrong gradients); load the "
            "model on one of those for white-box methods — forward-only methods (occlusion, RISE, LIME, "
            "Score-CAM) run on any provider")
    if not masks_are_exact(tuple(providers)):
        raise FailedPrecondition(
            f"gradient-based methods are not available on {', '.join(providers)}: this onnxruntime build computes "
            "the gradient graphs' ReLU masks inexactly (its HardSigmoid is not IEEE float32 at the kinks, "
            "see onnxplain.explainers.model.provider_check); forward-only methods (occlusion, RISE, LIME, "
            "Score-CAM) are not affected")
