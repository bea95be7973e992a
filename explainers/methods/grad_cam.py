"""Grad-CAM (Selvaraju et al. 2017, [53] in the survey)."""

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


@dataclass(frozen=True, kw_only=True)
class GradCamParams(LayerParams):
    """``layer``: default the last 4-D activation before global pooling."""


def grad_cam_weights(activation: NDArray[np.float64], gradient: NDArray[np.float64]) -> NDArray[np.float64]:
    """α_k = spatial mean of ∂y/∂A_k (eq. 1): [T, K, h, w] → [T, K]."""
    return gradient.mean(axis=(-2, -1))


@register(
    "grad_cam",
    family=Family.GRADIENT,
    black_box=False,
    params=GradCamParams,
    reference="Selvaraju et al., Grad-CAM: Visual Explanations from Deep Networks via Gradient-based "
              "Localization, ICCV 2017",
)
def grad_cam(model: Evaluator, image: NDArray[np.float32], objective: Objective, params: GradCamParams, *, rng
             ) -> Iterator[Event]:
    """ReLU(Σ_k α_k A_k) upsampled, α_k the spatial mean of the layer gradient (eq. 1–2); unnormalised.

    Passes: 1 forward + 1 backward per target.
    """
    yield from gradient_cam(model, image, objective, params, grad_cam_weights)
