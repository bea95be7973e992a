"""Saliency maps (Simonyan, Vedaldi & Zisserman 2014, [55] in the survey)."""

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
    "saliency",
    family=Family.GRADIENT,
    black_box=False,
    params=NoParams,
    reference="Simonyan, Vedaldi & Zisserman, Deep Inside Convolutional Networks: Visualising Image "
    "Classification Models and Saliency Maps, ICLR Workshop 2014",
)
def saliency(
    model: Evaluator, image: NDArray[np.float32], objective: Objective, params: NoParams, *, rng
) -> Iterator[Event]:
    """Magnitude of the score's gradient, maximised over channels: max_c |∂s/∂x_c| (Sec. 3.1).

    Unsigned. Passes: 1 F + 1 B per target. On a linear model it is max_c |w_c| at every pixel.
    """
    yield from explain_map("saliency", model, image, objective)
