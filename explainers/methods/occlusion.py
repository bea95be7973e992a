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
from ..perturb.masks.windows import SlidingWindows, WindowDeltas, window_masks
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
    citation="Zeiler & Fergus, Visualizing and Understanding Convolutional Networks, ECCV 2014",
)
def occlusion(
    model: Evaluator, image: NDArray[np.float32], objective: Objective, params: OcclusionParams, *, rng
) -> Iterator[Event]:
    """Mean drop of the score over the sliding windows (filled with a baseline) covering each pixel.

    Passes: ⌈H/s⌉·⌈W/s⌉ + 1 forward (the extra one scores the unoccluded image, in the same
    batch). The occluded copies are built inside the graph from 4 integers per window. Linear
    models are explained exactly: with a 1-pixel window and a zero baseline the heatmap is Σ_c w ⊙ x.
    """
    _, height, width = image.shape
    if params.window > max(height, width):
        raise InvalidArgument("params.window", f"{params.window} exceeds the input {height}x{width}")
    windows = SlidingWindows.cover((height, width), params.window, params.stride)
    # sample 0 is the unoccluded image (an empty box); sample i > 0 occludes window i - 1
    boxes = np.concatenate([np.zeros((1, 4), np.int64), windows.boxes])
    total = len(boxes)
    yield Planned(forward=total)

    deltas = WindowDeltas(windows, (height, width), objective.num_targets)
    unperturbed = None
    values_of = model.perturbed_values(
        total, lambda start, stop: {"windows": boxes[start:stop]}, objective,
        source=window_masks(height, width), image=image, baseline=make_baseline(image, params.baseline),
    )
    for start, stop, values in values_of:
        if start == 0:
            unperturbed, values, start = values[0], values[1:], 1
        deltas.add(start - 1, unperturbed - values)
        yield Progress(done=stop, total=total, heatmaps=deltas.heatmaps())
    yield Explanation(heatmaps=deltas.heatmaps(), scores=unperturbed, forward=model.context.forward,
                      extras={"bytes_per_sample": model.context.bytes_fed / total})
