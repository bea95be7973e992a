"""Input × gradient (Shrikumar et al. 2016; the "gradient * input" of Ancona et al. 2018)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

from ..events import Event
from ..model import Evaluator
from ..objectives import Objective
from .gradient_maps import NoParams, explain_map
from .registry import Family, register


@register(
    "input_x_gradient",
    family=Family.GRADIENT,
    black_box=False,
    params=NoParams,
    reference="Shrikumar, Greenside, Shcherbina & Kundaje, Not Just a Black Box: Learning Important Features "
    "Through Propagating Activation Differences, arXiv:1605.01713, 2016",
)
def input_x_gradient(
    model: Evaluator, image: NDArray[np.float32], objective: Objective, params: NoParams, *, rng
) -> Iterator[Event]:
    """Input times the score's gradient, summed over channels: Σ_c x_c · ∂s/∂x_c (signed).

    Passes: 1 F + 1 B per target. On a linear model (no bias) the heatmap sums to the score:
    it is Σ_c w_c ⊙ x_c exactly.
    """
    yield from explain_map("input_x_gradient", model, image, objective)
