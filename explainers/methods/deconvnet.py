"""DeconvNet (Zeiler & Fergus 2014, [68] in the survey) as a backward rule set."""

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
    "deconvnet",
    family=Family.GRADIENT,
    black_box=False,
    params=NoParams,
    reference="Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, ECCV 2014",
)
def deconvnet(
    model: Evaluator, image: NDArray[np.float32], objective: Objective, params: NoParams, *, rng
) -> Iterator[Event]:
    """Gradient whose ReLUs rectify the gradient itself, ignoring their input; channel sum.

    Every ReLU (and ReLU6-like Clip) backward is max(g, 0) (Sec. 2.1, "rectification"); the input
    gradient is summed over channels (signed). Max-pooling "switches" are the ordinary MaxPool
    gradient. Passes: 1 F + 1 B per target.

    Only those switches read the input: a net without max-pooling (the bundled EfficientNet-Lite0)
    gets the same map for every image — a known property of DeconvNet (Nie, Zhang & Patel, A
    Theoretical Explanation for Perplexing Behaviors of Backpropagation-based Visualizations,
    ICML 2018), not a bug.
    """
    yield from explain_map("deconvnet", model, image, objective)
