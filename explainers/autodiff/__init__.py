"""Reverse-mode automatic differentiation of ONNX graphs, emitting standard ONNX.

:func:`build_gradient_model` turns any classifier into a model that also outputs the gradient of
a weighted class score with respect to its input and chosen layers; see AUTODIFF.md.
"""

from .builder import BASELINE_INPUT, CLASS_WEIGHTS, INPUT_GRAD, GradientModel, build_gradient_model
from .context import VjpContext
from .errors import Declined, GradientError
from .registry import vjp
from .rule_sets import rule_set, rule_set_names, supported_ops

__all__ = [
    "CLASS_WEIGHTS",
    "Declined",
    "INPUT_GRAD",
    "BASELINE_INPUT",
    "GradientError",
    "GradientModel",
    "VjpContext",
    "build_gradient_model",
    "rule_set",
    "rule_set_names",
    "supported_ops",
    "vjp",
]
