"""Guided Grad-CAM (Selvaraju et al. 2017, [53] in the survey)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..events import Event, Explanation, Planned, Progress
from ..model import Evaluator
from ..objectives import Objective
from .cam_base import LayerParams, gradient_cam_maps, resolve_layer
from .grad_cam import grad_cam_weights
from .gradient_maps import GRADIENT_MAPS
from .registry import Family, register


@dataclass(frozen=True, kw_only=True)
class GuidedGradCamParams(LayerParams):
    """``layer``: the Grad-CAM layer; default the last 4-D activation before global pooling."""


@register(
    "guided_grad_cam",
    family=Family.GRADIENT,
    black_box=False,
    params=GuidedGradCamParams,
    reference="Selvaraju et al., Grad-CAM: Visual Explanations from Deep Networks via Gradient-based "
              "Localization, ICCV 2017",
)
def guided_grad_cam(model: Evaluator, image: NDArray[np.float32], objective: Objective,
                    params: GuidedGradCamParams, *, rng) -> Iterator[Event]:
    """Guided backprop ⊙ the upsampled Grad-CAM map (§3.2), reduced over channels as guided backprop is
    (the signed channel sum); signed.

    Passes: 2 forward + 2 backward per target — the vanilla layer gradient for Grad-CAM, then
    the guided input gradient (guided rules would also change the layer gradient where a ReLU
    lies between the layer and the scores).
    """
    layer = resolve_layer(model.introspection, params.layer)
    targets = objective.num_targets
    yield Planned(forward=2 * targets, backward=2 * targets)
    maps, scores = gradient_cam_maps(model, image, objective, layer, grad_cam_weights)
    yield Progress(done=2 * targets, total=4 * targets)
    guided = GRADIENT_MAPS["guided_backprop"]
    (batch,) = list(model.gradients(1, lambda start, stop: image[None], objective, rules=guided.rules))
    heatmaps = guided.reduce(batch.input_grad[0] * maps[:, None], image[None])  # [T, C, H, W] → [T, H, W]
    yield Explanation(heatmaps=np.ascontiguousarray(heatmaps, dtype=np.float32), scores=scores,
                      forward=model.context.forward, backward=model.context.backward)
