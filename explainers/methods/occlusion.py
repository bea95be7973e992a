"""Occlusion (Zeiler & Fergus 2014, [68] in the survey)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..errors import InvalidArgument
from ..events import Event, Explanation, Planned, Progress
from ..model import Evaluator
from ..objectives import Objective
from ..params import MethodParams, param
from ..perturb.baselines import BASELINES, make_baseline
from ..perturb.windows import SlidingWindows, WindowDeltas
from .registry import Family, register


@dataclass(frozen=True, kw_only=True)
class OcclusionParams(MethodParams):
    window: int = param(16, low=1, high=4096, doc="side of the square occluding window, input pixels")
    stride: int = param(8, low=1, high=4096, doc="step between window positions, input pixels (<= window)")
    baseline: str = param("zero", choices=BASELINES, doc="what fills the window")

    def check(self) -> None:
        if self.stride > self.window:
            self.fail("stride", f"{self.stride} exceeds the window {self.window}; allowed: [1, window]")


@register(
    "occlusion",
    family=Family.PERTURBATION,
    black_box=True,
    params=OcclusionParams,
    reference="Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, ECCV 2014",
)
def occlusion(
    model: Evaluator, image: NDArray[np.float32], objective: Objective, params: OcclusionParams, *, rng
) -> Iterator[Event]:
    """Mean drop of the score over the sliding windows (filled with a baseline) covering each pixel.

    Passes: ⌈H/s⌉·⌈W/s⌉ + 1 forward (the extra one scores the unoccluded image, in the same
    batch). Linear models are explained exactly: with a 1-pixel window and a zero baseline the
    heatmap is Σ_c w ⊙ x.
    """
    _, height, width = image.shape
    if params.window > max(height, width):
        raise InvalidArgument("params.window", f"{params.window} exceeds the input {height}x{width}")
    windows = SlidingWindows.cover((height, width), params.window, params.stride)
    fill = make_baseline(image, params.baseline)
    total = len(windows) + 1
    yield Planned(forward=total)

    def make_images(start: int, stop: int) -> NDArray[np.float32]:
        # sample 0 is the unoccluded image; sample i > 0 occludes window i - 1
        if start > 0:
            return windows.occlude(image, fill, start - 1, stop - 1)
        return np.concatenate([image[None], windows.occlude(image, fill, 0, stop - 1)])

    deltas = WindowDeltas(windows, (height, width), objective.num_targets)
    reference = None
    for start, stop, values in model.objective_values(total, make_images, objective):
        if start == 0:
            reference, values, start = values[0], values[1:], 1
        deltas.add(start - 1, reference - values)
        yield Progress(done=stop, total=total, heatmaps=deltas.heatmaps())
    yield Explanation(heatmaps=deltas.heatmaps(), scores=reference, forward=model.context.forward)
