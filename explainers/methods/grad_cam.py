"""Grad-CAM (Selvaraju et al. 2017, [53] in the survey)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .cam_base import register_cam


def grad_cam_weights(activation: NDArray[np.float64], gradient: NDArray[np.float64]) -> NDArray[np.float64]:
    """ReLU(Σ_k α_k A_k) upsampled, α_k the spatial mean of the layer gradient (eq. 1–2); unnormalised.

    α_k = mean_ij ∂y/∂A_k,ij (eq. 1): [T, K, h, w] → [T, K].
    """
    return gradient.mean(axis=(-2, -1))


grad_cam = register_cam(
    "grad_cam", weights=grad_cam_weights,
    citation="Selvaraju et al., Grad-CAM: Visual Explanations from Deep Networks via Gradient-based "
    "Localization, ICCV 2017",
)
