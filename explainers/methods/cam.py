"""CAM, class activation mapping (Zhou et al. 2016, [71] in the survey)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

from ..events import Event, Explanation, Planned
from ..model import Evaluator
from ..objectives import Objective, check_contrast_loss, logit_seeds
from .cam_base import LayerParams, class_activation_maps, linear_head, resolve_layer
from .registry import Family, register


@register(
    "cam",
    family=Family.GRADIENT,
    black_box=False,
    params=LayerParams,
    citation="Zhou et al., Learning Deep Features for Discriminative Localization, CVPR 2016",
)
def cam(model: Evaluator, image: NDArray[np.float32], objective: Objective, params: LayerParams, *, rng
        ) -> Iterator[Event]:
    """Σ_k w_{k,c} A_k with the linear head's weights read from the graph (eq. 2); signed, not ReLU'd.

    ``params.layer``: the activation feeding the global average pool ("" = the model's CAM layer).

    Needs a (global average pool → linear) head on the layer; the map explains the logits, and a
    target row W[t] weights the classes: w_t = W[t] · w. For ``contrast_loss=cross_entropy`` the
    row is the loss's gradient on the logits, softmax(y) − e_Q (Prabhushankar et al. 2020), read
    from the same forward. Passes: 1 forward for all targets.
    On such a head Grad-CAM equals ReLU(CAM) / (h·w).

    Raises:
        FailedPrecondition: the head is not GAP → linear (the message says what the layer feeds).
    """
    check_contrast_loss(objective, output_producer=model.signature.output_producer,
                        outputs_are_probabilities=model.outputs_are_probabilities, gradients=True)
    layer = resolve_layer(model.introspection, params.layer)
    head = linear_head(model.introspection, layer)  # [classes, K]
    yield Planned(forward=1)
    outputs = model.layer_activations(image[None], [layer])
    scores = objective(outputs[model.signature.output_name],
                       outputs_are_probabilities=model.outputs_are_probabilities)[0]
    weights = logit_seeds(objective, outputs[model.signature.output_name][0],
                          outputs_are_probabilities=model.outputs_are_probabilities) @ head  # [T, K]
    heatmaps = class_activation_maps(outputs[layer][0], weights, image.shape[1:], rectify=False)
    yield Explanation(heatmaps=heatmaps, scores=scores, forward=model.context.forward)
