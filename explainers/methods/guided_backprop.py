"""Guided backpropagation (Springenberg et al. 2015, [60] in the survey)."""

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
    "guided_backprop",
    family=Family.GRADIENT,
    black_box=False,
    params=NoParams,
    reference="Springenberg, Dosovitskiy, Brox & Riedmiller, Striving for Simplicity: The All Convolutional "
    "Net, ICLR Workshop 2015",
)
def guided_backprop(
    model: Evaluator, image: NDArray[np.float32], objective: Objective, params: NoParams, *, rng
) -> Iterator[Event]:
    """Gradient whose ReLUs pass only positive gradient where their input was positive, channel sum.

    Every ReLU (and ReLU6-like Clip) backward keeps g where x > 0 and g > 0 (Fig. 1); the input
    gradient is summed over channels (signed; see :mod:`.gradient_maps` — guided Grad-CAM uses the
    per-channel map instead). Passes: 1 F + 1 B per target.
    """
    yield from explain_map("guided_backprop", model, image, objective)
