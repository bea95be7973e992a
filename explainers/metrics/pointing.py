"""Localisation against a caller-given object region: the pointing game (Zhang et al. 2016,
Top-down Neural Attention by Excitation Backprop, ECCV; IJCV 2018) and the energy-based pointing
game (Wang et al. 2020, Score-CAM, CVPR Workshops, §4.2).

The region is a box ``(x0, y0, x1, y1)`` in model-input pixels (x to the right, y down; pixel (r, c)
is inside when its centre (c + ½, r + ½) is) or a mask [H, W] (non-zero = object). Neither costs
a model pass; the caller's region is checked before anything runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import distance_transform_edt

from ..errors import FailedPrecondition
from ..events import Planned, Progress
from ..params import param
from .registry import MetricParams, PlanInput, register_metric
from .result import MetricResult
from .subject import Subject

NO_BOX = (0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True, kw_only=True)
class RegionParams(MetricParams):
    box: tuple[float, ...] = param(NO_BOX, low=0.0, finite=True,
                                   doc="object box x0,y0,x1,y1 in model-input pixels (x right, y down); "
                                       "0,0,0,0 = none (then give mask)")
    mask: NDArray[np.float32] | None = param(None, doc="object mask [H, W] in model-input pixels, non-zero = "
                                                      "object (instead of box)")

    def check(self) -> None:
        if len(self.box) != 4:
            self.fail("box", f"{len(self.box)} values given; expected 4: x0, y0, x1, y1")
        given = self.box != NO_BOX
        if given and self.mask is not None:
            self.fail("box", "give a box or a mask, not both")
        if not given and self.mask is None:
            self.fail("box", "no object region given; set box (x0,y0,x1,y1 in model-input pixels) or mask ([H, W])")
        x0, y0, x1, y1 = self.box
        if given and not (x0 < x1 and y0 < y1):
            self.fail("box", f"{self.box} is empty; expected x0 < x1 and y0 < y1")

    def region(self, height: int, width: int) -> NDArray[np.bool_]:
        """The object's pixels [H, W]; :class:`InvalidArgument` if none is inside the image or the mask's
        shape is not [H, W]."""
        if self.mask is not None:
            if self.mask.shape != (height, width):
                self.fail("mask", f"shape {list(self.mask.shape)}; allowed: [{height}, {width}] (the model's input)")
            inside = self.mask != 0
        else:
            x0, y0, x1, y1 = self.box
            cols, rows = np.arange(width) + 0.5, np.arange(height) + 0.5
            inside = ((rows >= y0) & (rows <= y1))[:, None] & ((cols >= x0) & (cols <= x1))[None, :]
        if not inside.any():
            which = "mask" if self.mask is not None else "box"
            self.fail(which, f"covers no pixel (centre) of the {width}x{height} model input")
        return inside


@dataclass(frozen=True, kw_only=True)
class PointingParams(RegionParams):
    tolerance: float = param(15.0, low=0.0, high=100_000.0,
                             doc="a hit may miss the region by this many pixels (Zhang et al.: 15)")


def plan_region(params: RegionParams, given: PlanInput) -> Planned:
    """No model pass; checks the region against the input size."""
    _, height, width = given.shape
    params.region(height, width)
    return Planned(forward=0)


@register_metric("pointing_game", params=PointingParams, higher_is_better=True, reexplains=False, plan=plan_region,
                 citation="Zhang, Bargal, Lin, Brandt, Shen & Sclaroff, Top-down Neural Attention by Excitation "
                          "Backprop, ECCV 2016 (IJCV 2018)")
def pointing_game(subject: Subject, params: PointingParams, *, rng: np.random.Generator
                  ) -> Iterator[Planned | Progress | MetricResult]:
    """Whether the map's maximum lies on the object, within a tolerance (1 = hit, 0 = miss).

    ``hit_t = [dist(argmax Φ_t, region) ≤ tolerance]`` with the Euclidean distance between pixel
    centres (0 inside). If the maximum is attained at several pixels the value is the fraction of
    them that hit (so a flat map is not counted as a lucky hit). Passes: none.
    """
    yield Planned(forward=0)
    _, height, width = subject.image.shape
    distance = distance_transform_edt(~params.region(height, width))  # [H, W] to the nearest object pixel
    values = []
    for heatmap in subject.heatmaps:
        peaks = heatmap == heatmap.max()
        values.append(float((distance[peaks] <= params.tolerance).mean()))
    yield MetricResult("pointing_game", np.asarray(values, np.float32), higher_is_better=True,
                       extras={"tolerance": params.tolerance})


@register_metric("energy_pointing_game", params=RegionParams, higher_is_better=True, reexplains=False,
                 plan=plan_region,
                 citation="Wang, Wang, Du, Yang, Zhang, Ding, Mardziel & Hu, Score-CAM: Score-Weighted Visual "
                          "Explanations for Convolutional Neural Networks, CVPR Workshops 2020, §4.2")
def energy_pointing_game(subject: Subject, params: RegionParams, *, rng: np.random.Generator
                         ) -> Iterator[Planned | Progress | MetricResult]:
    """Share of the map's positive mass that falls on the object (higher is better).

    ``E_t = Σ_{p ∈ region} max(Φ_t(p), 0) / Σ_p max(Φ_t(p), 0)``. Raises FailedPrecondition for a map
    without positive values (the share is undefined). Extras: ``region_fraction``, the share of the
    image the region covers (what a uniform map would score). Passes: none.
    """
    yield Planned(forward=0)
    _, height, width = subject.image.shape
    region = params.region(height, width)
    positive = np.maximum(subject.heatmaps.astype(np.float64), 0.0)
    mass = positive.sum(axis=(1, 2))
    if np.any(mass == 0):
        raise FailedPrecondition("energy_pointing_game: the map of a target has no positive values, so its share "
                                 "inside the region is undefined")
    values = positive[:, region].sum(axis=1) / mass
    yield MetricResult("energy_pointing_game", values.astype(np.float32), higher_is_better=True,
                       extras={"region_fraction": float(region.mean())})


