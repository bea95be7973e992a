"""What saliency, input × gradient, guided backprop and DeconvNet share: one gradient pass per
target (a ReLU backward rule set), then a reduction of the input gradient over channels.

======================  ===============  ===========================================================
map                     rules            heatmap of target t (g = ∂s_t/∂x [C, H, W] under the rules)
======================  ===============  ===========================================================
``saliency``            vanilla          max_c |g_c|                        (unsigned)
``input_x_gradient``    vanilla          Σ_c x_c · g_c                      (signed)
``guided_backprop``     guided_backprop  Σ_c g_c                            (signed)
``deconvnet``           deconvnet        Σ_c g_c                            (signed)
======================  ===============  ===========================================================

Guided backprop and DeconvNet reconstruct an *image* (Springenberg et al. show it in RGB); a
heatmap needs one value per pixel, so their channels are summed, signed — the signed channel sum
of Captum's per-channel attribution, linear in the per-channel map (so it commutes with averaging,
e.g. SmoothGrad). Guided Grad-CAM multiplies the *per-channel* map, which is
``Evaluator.gradients(..., rules="guided_backprop").input_grad``; it is not this reduction.

Reductions act on the last three axes (C, H, W), so SmoothGrad can apply them to a batch
``grad`` [n, T, C, H, W] with the (noisy) inputs ``x`` [n, 1, C, H, W]: :data:`GRADIENT_MAPS`
is what its ``inner`` names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..events import Event, Explanation, Planned
from ..model import Evaluator
from ..objectives import Objective
from ..params import MethodParams

Reduction = Callable[[NDArray[np.float32], NDArray[np.float32]], NDArray[np.float32]]
"""``reduce(grad [..., C, H, W], x [..., C, H, W] broadcastable) -> heatmap [..., H, W]``."""


@dataclass(frozen=True, kw_only=True)
class NoParams(MethodParams):
    """A method without parameters (the proto has no params message for it)."""


@dataclass(frozen=True)
class GradientMap:
    """A rule set for the backward pass and the channel reduction of its input gradient."""

    rules: str
    reduce: Reduction


GRADIENT_MAPS: dict[str, GradientMap] = {
    "saliency": GradientMap("vanilla", lambda grad, x: np.abs(grad).max(axis=-3)),
    "input_x_gradient": GradientMap("vanilla", lambda grad, x: (x * grad).sum(axis=-3)),
    "guided_backprop": GradientMap("guided_backprop", lambda grad, x: grad.sum(axis=-3)),
    "deconvnet": GradientMap("deconvnet", lambda grad, x: grad.sum(axis=-3)),
}


def explain_map(name: str, model: Evaluator, image: NDArray[np.float32], objective: Objective) -> Iterator[Event]:
    """The :data:`GRADIENT_MAPS` entry ``name`` of ``image`` [C, H, W] for every target.

    Passes: one forward + one backward per target (all targets in one batch). Scores are the
    objective on the values the gradient graph differentiates (the logits of a Softmax model).
    """
    gradient_map = GRADIENT_MAPS[name]
    targets = objective.num_targets
    yield Planned(forward=targets, backward=targets)
    (batch,) = model.gradients(1, lambda start, stop: image[None], objective, rules=gradient_map.rules)
    heatmaps = gradient_map.reduce(batch.input_grad[0], image[None])  # [T, C, H, W] → [T, H, W]
    yield Explanation(heatmaps=np.ascontiguousarray(heatmaps, dtype=np.float32), scores=batch.scores[0],
                      forward=model.context.forward, backward=model.context.backward)
