"""Guided Grad-CAM (Selvaraju et al. 2017, [53] in the survey)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

from ..events import Event, Explanation, Planned, Progress
from ..model import Evaluator
from ..objectives import Objective
from .cam_base import LayerParams, gradient_cam_maps, resolve_layer
from .grad_cam import grad_cam_weights
from .gradient_maps import guided_backprop
from .registry import Family, register


@register(
    "guided_grad_cam",
    family=Family.GRADIENT,
    black_box=False,
    params=LayerParams,
    citation="Selvaraju et al., Grad-CAM: Visual Explanations from Deep Networks via Gradient-based "
             "Localization, ICCV 2017",
)
def guided_grad_cam(model: Evaluator, image: NDArray[np.float32], objective: Objective,
                    params: LayerParams, *, rng) -> Iterator[Event]:
    """Guided backprop ⊙ the upsampled Grad-CAM map (§3.2), reduced over channels as guided backprop is
    (the signed channel sum); signed. ``params.layer``: the Grad-CAM layer.

    Passes: 2 forward + 2 backward per target — the vanilla layer gradient for Grad-CAM, then
    the guided input gradient (guided rules would also change the layer gradient where a ReLU
    lies between the layer and the scores).
    """
    layer = resolve_layer(model.introspection, params.layer)
    targets = objective.num_targets
    yield Planned(forward=2 * targets, backward=2 * targets)
    maps, scores = gradient_cam_maps(model, image, objective, layer, grad_cam_weights)
    yield Progress(done=2 * targets, total=4 * targets)
    (batch,) = list(model.gradients(1, lambda start, stop: image[None], objective, rules=guided_backprop.rules))
    heatmaps = guided_backprop.reduce(batch.input_grad[0] * maps[:, None])  # [T, C, H, W] → [T, H, W]
    yield Explanation(heatmaps=heatmaps, scores=scores,
                      forward=model.context.forward, backward=model.context.backward)
