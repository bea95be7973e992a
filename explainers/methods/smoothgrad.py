"""SmoothGrad (Smilkov et al. 2017, [59] in the survey), SmoothGrad-Squared and VarGrad around
another gradient method.

Composed, not re-implemented: the wrapped method is any registered method with a gradient
attribution (:func:`~.registry.gradient_attributions`: the plain gradient maps, Integrated
Gradients, DeepLIFT), whose :class:`~.attribution.GradientAttribution` hook — a per-channel
attribution from the path gradients, then the method's channel reduction — is evaluated for every
noisy copy by the same batched :func:`~.attribution.attribute` that IG uses. One noiseless sample
reproduces each wrapped method (tested). Statistics are per channel before the reduction, as
Captum's ``NoiseTunnel``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..events import Event, Explanation, Planned, Progress
from ..model import Evaluator
from ..objectives import Objective
from ..params import MethodParams, param
from ..perturb.paths import QUADRATURE
from .attribution import GradientAttribution, attribute, objective_values
from .integrated_gradients import IntegratedGradientsParams
from .registry import Family, get_method, gradient_attributions, register

_IG = IntegratedGradientsParams()  # the wrapped IG's defaults: steps and rule (per request: ig_steps, ig_rule)

VARIANTS = ("mean", "squared", "vargrad")


@dataclass(frozen=True, kw_only=True)
class SmoothGradParams(MethodParams):
    samples: int = param(50, low=1, high=10000, doc="noisy copies n (× the inner method's passes)")
    noise_level: float = param(0.15, low=0.0, high=10.0, doc="noise σ as a fraction of the input's max − min")
    variant: str = param("mean", choices=VARIANTS, doc="mean (SmoothGrad), squared (SmoothGrad²) or vargrad (variance)")
    inner: str = param("saliency", choices=gradient_attributions,
                       doc="the wrapped gradient method, with its defaults (integrated_gradients and deeplift: "
                           "the black baseline; IG's steps and rule: ig_steps, ig_rule)")
    ig_steps: int = param(_IG.steps, low=2, high=1024,
                          doc="path points of the wrapped integrated_gradients (another value than the default "
                              "is rejected with other inners)")
    ig_rule: str = param(_IG.rule, choices=QUADRATURE,
                         doc="quadrature of the wrapped integrated_gradients (another value than the default "
                             "is rejected with other inners)")

    def check(self) -> None:
        if self.inner == "integrated_gradients":
            return
        for name, default in (("ig_steps", _IG.steps), ("ig_rule", _IG.rule)):
            if getattr(self, name) != default:
                self.fail(name, f"only used when inner is 'integrated_gradients' (inner is {self.inner!r})")

    def attribution(self, black: NDArray[np.float32]) -> GradientAttribution:
        """The wrapped method's hook, with its default parameters (IG: this request's ig_steps and
        ig_rule) and, for the path methods, the baseline ``black`` [C, H, W] (the model's black
        image: their default baseline)."""
        inner = get_method(self.inner)
        values = {"steps": self.ig_steps, "rule": self.ig_rule} if self.inner == "integrated_gradients" else {}
        return inner.attribution(inner.params(**values), black)


@register(
    "smoothgrad",
    family=Family.GRADIENT,
    black_box=False,
    params=SmoothGradParams,
    citation="Smilkov, Thorat, Kim, Viégas & Wattenberg, SmoothGrad: removing noise by adding noise, 2017",
)
def smoothgrad(
    model: Evaluator, image: NDArray[np.float32], objective: Objective, params: SmoothGradParams, *, rng
) -> Iterator[Event]:
    """Mean (or mean square, or variance) of the inner method's attribution over x + N(0, σ²).

    The paper's eq. 3 with σ = noise_level · (max x − min x); SmoothGrad² and VarGrad as in Captum's
    ``NoiseTunnel`` (Adebayo et al. 2018 for VarGrad). Statistics are taken per channel and then
    reduced over channels as the inner method does (saliency: max of |∇|; the others: sum, signed).
    Noise sample k is drawn from its own seed (drawn from ``rng``), so results do not depend on the
    batch size.
    Passes: samples × the inner method's F+B per target (IG: × its ig_steps; DeepLIFT: + 1 F for
    x′), batched, + 1 forward for the scores f(x). Extras: ``sigma``.
    """
    inner = params.attribution(model.black_image())
    sigma = params.noise_level * float(image.max() - image.min())
    seeds = rng.integers(0, 2**63 - 1, size=params.samples)

    def noisy(k0: int, k1: int) -> NDArray[np.float32]:
        out = np.empty((k1 - k0, *image.shape), np.float32)
        for row, seed in zip(out, seeds[k0:k1]):
            np.random.default_rng(seed).standard_normal(dtype=np.float32, out=row)
        out *= np.float32(sigma)
        out += image
        return out

    points = params.samples * len(inner.path) * objective.num_targets
    baseline_passes = points if inner.baseline_pass else 0  # DeepLIFT: x′ beside every point
    planned = Planned(forward=points + baseline_passes + 1, backward=points)  # + 1: f(x) itself, for the scores
    yield planned
    scores = objective_values(model, image[None], objective)[0]
    moments = Moments(params.variant)
    for step in attribute(model, inner, params.samples, noisy, objective):
        if step.inputs:
            moments.add(step.attributions)
        heatmaps = inner.reduce(moments.statistic()) if moments.count else None
        yield Progress(done=model.context.forward + model.context.backward, total=planned.total, heatmaps=heatmaps)
    yield Explanation(heatmaps=inner.reduce(moments.statistic()), scores=scores,
                      forward=model.context.forward, backward=model.context.backward, extras={"sigma": sigma})


class Moments:
    """Per-channel running statistics of the samples' attributions, float64: the sum for ``mean``,
    else Welford's mean and sum of squared deviations (exactly zero variance for equal samples)."""

    def __init__(self, variant: str) -> None:
        self.variant, self.count, self.total, self.mean, self.m2 = variant, 0, None, None, None

    def add(self, samples: NDArray) -> None:
        """Add ``samples`` [n, T, C, H, W] in order."""
        if self.variant == "mean":
            total = np.add.reduce(samples, axis=0, dtype=np.float64)
            self.count, self.total = self.count + len(samples), total if self.total is None else self.total + total
            return
        for sample in samples:
            self.count += 1
            if self.mean is None:
                self.mean, self.m2 = sample.astype(np.float64), np.zeros(sample.shape)
                continue
            delta = sample - self.mean
            self.mean += delta / self.count
            delta *= sample - self.mean
            self.m2 += delta

    def statistic(self) -> NDArray[np.float64]:
        """mean, mean square (mean² + variance) or variance (population, as Captum's VarGrad), [T, C, H, W]."""
        if self.variant == "mean":
            return self.total / self.count
        variance = self.m2 / self.count
        return self.mean * self.mean + variance if self.variant == "squared" else variance
