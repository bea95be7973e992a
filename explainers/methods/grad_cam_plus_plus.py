"""Grad-CAM++ (Chattopadhyay et al. 2018, [6] in the survey)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..events import Event
from ..model import Evaluator
from ..objectives import Objective
from .cam_base import LayerParams, gradient_cam
from .registry import Family, register

EPSILON = 1e-6  # as pytorch-grad-cam: keeps α finite where the denominator vanishes


@dataclass(frozen=True, kw_only=True)
class GradCamPlusPlusParams(LayerParams):
    """``layer``: default the last 4-D activation before global pooling."""


def grad_cam_plus_plus_weights(activation: NDArray[np.float64], gradient: NDArray[np.float64]) -> NDArray[np.float64]:
    """w_k = Σ_ij α_ij · ReLU(g_ij), α_ij = g² / (2g² + Σ_ab A_ab · g³) (eq. 19, the exp-score closed
    form: higher derivatives of exp(S) are powers of the first, so no second-order graph), with α = 0
    where g = 0. [T, K, h, w] → [T, K]."""
    squared = gradient**2
    total = activation.sum(axis=(-2, -1), keepdims=True)
    alpha = squared / (2 * squared + total * squared * gradient + EPSILON)
    alpha = np.where(gradient != 0, alpha, 0.0)
    return (alpha * np.maximum(gradient, 0)).sum(axis=(-2, -1))


@register(
    "grad_cam_plus_plus",
    family=Family.GRADIENT,
    black_box=False,
    params=GradCamPlusPlusParams,
    reference="Chattopadhyay et al., Grad-CAM++: Generalized Gradient-based Visual Explanations for Deep "
              "Convolutional Networks, WACV 2018",
)
def grad_cam_plus_plus(model: Evaluator, image: NDArray[np.float32], objective: Objective,
                       params: GradCamPlusPlusParams, *, rng) -> Iterator[Event]:
    """ReLU(Σ_k w_k A_k) upsampled, w_k the α-weighted positive gradients; unnormalised.

    Passes: 1 forward + 1 backward per target.
    """
    yield from gradient_cam(model, image, objective, params, grad_cam_plus_plus_weights)
