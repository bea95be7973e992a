"""The baseline input x′ of the path methods (Integrated Gradients, DeepLIFT): one parameter pair,
one check, one way to build it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..model import Evaluator
from ..params import MethodParams, param
from ..perturb.paths import PATH_BASELINES, path_baseline


@dataclass(frozen=True, kw_only=True)
class BaselineParams(MethodParams):
    """``baseline`` and ``baseline_tensor``, for a method that compares x with a baseline x′ (what
    DeepLIFT's paper calls the *reference* input)."""

    baseline: str = param("black", choices=PATH_BASELINES,
                          doc="the baseline input x′: black (the IG paper's: the all-black image through the "
                              "model's preprocessing), zero (0 after normalisation: the mean colour of "
                              "mean/std-normalised models), blur, uniform_noise (seeded) or tensor (baseline_tensor)")
    baseline_tensor: NDArray[np.float32] | None = param(
        None, doc="x′ when baseline is 'tensor': float32 [C, H, W] in the canonical layout of the preprocessed input")

    def check(self) -> None:
        if self.baseline == "tensor" and self.baseline_tensor is None:
            self.fail("baseline_tensor", "required when baseline is 'tensor'")
        if self.baseline != "tensor" and self.baseline_tensor is not None:
            self.fail("baseline_tensor", f"only used when baseline is 'tensor' (baseline is {self.baseline!r})")

    def baseline_input(self, model: Evaluator, image: NDArray[np.float32], rng: np.random.Generator
                       ) -> NDArray[np.float32]:
        """x′ [C, H, W] for ``image`` [C, H, W] on ``model`` (whose preprocessing defines black)."""
        return path_baseline(image, self.baseline, rng=rng, tensor=self.baseline_tensor,
                             black=model.black_image())
