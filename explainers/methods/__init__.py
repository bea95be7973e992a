"""Attribution methods, one module each; importing this package registers them all."""

from . import (  # noqa: F401  (importing registers)
    cam,
    cdeepex,
    cem,
    deeplift,
    extremal_perturbation,
    fullgrad,
    grad_cam,
    grad_cam_plus_plus,
    gradient_maps,
    guided_grad_cam,
    integrated_gradients,
    lime,
    meaningful_perturbation,
    occlusion,
    rise,
    score_cam,
    smoothgrad,
)
from .registry import Family, MethodSpec, get_method, gradient_attributions, list_methods, register

__all__ = ["Family", "MethodSpec", "get_method", "gradient_attributions", "list_methods", "register"]
