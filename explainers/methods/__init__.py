"""Attribution methods, one module each; importing this package registers them all."""

from . import (  # noqa: F401  (importing registers)
    cam,
    deconvnet,
    deeplift,
    extremal_perturbation,
    fullgrad,
    grad_cam,
    grad_cam_plus_plus,
    guided_backprop,
    guided_grad_cam,
    input_x_gradient,
    integrated_gradients,
    lime,
    occlusion,
    rise,
    saliency,
    score_cam,
    smoothgrad,
)
from .registry import Family, MethodSpec, get_method, list_methods, register

__all__ = ["Family", "MethodSpec", "get_method", "list_methods", "register"]
