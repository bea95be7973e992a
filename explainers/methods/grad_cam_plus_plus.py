"""Grad-CAM++ (Chattopadhyay et al. 2018, [6] in the survey)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .cam_base import register_cam

EPSILON = 1e-6  # as pytorch-grad-cam: keeps α finite where the denominator vanishes


def grad_cam_plus_plus_weights(activation: NDArray[np.float64], gradient: NDArray[np.float64]) -> NDArray[np.float64]:
    """ReLU(Σ_k w_k A_k) upsampled, w_k the α-weighted positive gradients; unnormalised.

    w_k = Σ_ij α_ij · ReLU(g_ij), α_ij = g² / (2g² + Σ_ab A_ab · g³) (eq. 19, the exp-score closed
    form: higher derivatives of exp(S) are powers of the first, so no second-order graph), with α = 0
    where g = 0. [T, K, h, w] → [T, K].
    """
    squared = gradient**2
    total = activation.sum(axis=(-2, -1), keepdims=True)
    alpha = squared / (2 * squared + total * squared * gradient + EPSILON)
    alpha = np.where(gradient != 0, alpha, 0.0)
    return (alpha * np.maximum(gradient, 0)).sum(axis=(-2, -1))


grad_cam_plus_plus = register_cam(
    "grad_cam_plus_plus", weights=grad_cam_plus_plus_weights,
    citation="Chattopadhyay et al., Grad-CAM++: Generalized Gradient-based Visual Explanations for Deep "
    "Convolutional Networks, WACV 2018",
)
