"""Straight-line paths x′ → x for path-attribution methods: quadratures and baselines x′.

Integrated Gradients integrates the gradient along ``x′ + α(x − x′)``, α ∈ [0, 1]; DeepLIFT and
expected-gradients-style methods need the same baselines. Everything here is numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..errors import InvalidArgument
from .baselines import make_baseline

QUADRATURE = ("gauss_legendre", "trapezoid", "riemann_left", "riemann_right", "riemann_middle")
"""Quadratures of the path integral (not "rules": ``rules=`` names autodiff rule sets; the user-visible
parameters ``rule``/``ig_rule`` keep their names, they are the contract)."""
PATH_BASELINES = ("black", "zero", "blur", "uniform_noise", "tensor")


@dataclass(frozen=True)
class Quadrature:
    """Nodes ``alphas`` [m] in [0, 1] and ``weights`` [m] (summing to 1): ∫₀¹ g ≈ Σ wᵢ g(αᵢ)."""

    alphas: NDArray[np.float64]
    weights: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.alphas)

    def index_of(self, alpha: float) -> int | None:
        """The node exactly at ``alpha`` (0: the baseline, 1: the input), if the quadrature has one."""
        hits = np.flatnonzero(self.alphas == alpha)
        return int(hits[0]) if len(hits) else None


def quadrature(name: str, steps: int) -> Quadrature:
    """``steps`` nodes of the quadrature ``name`` on [0, 1] (as Captum's ``approximation_methods``).

    ``gauss_legendre``: exact for polynomials of degree 2·steps − 1, no endpoint;
    ``trapezoid``: equally spaced, both endpoints (weights 1/2 at the ends), steps ≥ 2;
    ``riemann_left``/``riemann_right``/``riemann_middle``: k/m, (k + 1)/m, (k + ½)/m, weights 1/m.

    Raises:
        ValueError: unknown quadrature, or too few steps for it.
    """
    if steps < (2 if name == "trapezoid" else 1):
        raise ValueError(f"{name} needs more than {steps} steps")
    k = np.arange(steps, dtype=np.float64)
    uniform = np.full(steps, 1.0 / steps)
    if name == "gauss_legendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return Quadrature(0.5 * (nodes + 1.0), 0.5 * weights)
    if name == "trapezoid":
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] *= 0.5
        return Quadrature(k / (steps - 1), weights)
    if name == "riemann_left":
        return Quadrature(k / steps, uniform)
    if name == "riemann_right":
        return Quadrature((k + 1) / steps, uniform)
    if name == "riemann_middle":
        return Quadrature((k + 0.5) / steps, uniform)
    raise ValueError(f"unknown quadrature {name!r}; allowed: {', '.join(QUADRATURE)}")


def path_baseline(
    image: NDArray[np.float32],
    kind: str,
    *,
    rng: np.random.Generator,
    tensor: NDArray[np.float32] | None = None,
    black: NDArray[np.float32] | None = None,
    field: str = "params.baseline_tensor",
) -> NDArray[np.float32]:
    """The baseline x′ [C, H, W] float32 for ``image`` [C, H, W].

    ``black``: ``black``, the all-black image through the model's preprocessing (the IG paper's
    choice; :func:`explainers.model.black_image`; 0 for a model whose config sets no mean); ``zero``: 0 in the model's normalised space (the
    dataset mean colour for mean/std-normalised models; black only when the mean is 0);
    ``blur``: a Gaussian blur (σ = 10% of the shorter side, as occlusion's); ``uniform_noise``:
    U(min x, max x) per value, drawn from ``rng``; ``tensor``: ``tensor`` itself.

    Raises:
        InvalidArgument (``field``): ``tensor`` missing or not shaped like the image.
    """
    if kind == "black":
        if black is None:
            raise ValueError("the black baseline needs the model's black image")
        return np.asarray(black, np.float32)
    if kind in ("zero", "blur"):
        return make_baseline(image, kind)
    if kind == "uniform_noise":
        return rng.uniform(float(image.min()), float(image.max()), image.shape).astype(np.float32)
    if kind == "tensor":
        return check_baseline_tensor(tensor, image.shape, field)
    raise ValueError(f"unknown baseline {kind!r}; allowed: {', '.join(PATH_BASELINES)}")


def check_baseline_tensor(
    tensor: NDArray[np.float32] | None, shape: tuple[int, ...], field: str = "params.baseline_tensor"
) -> NDArray[np.float32]:
    """``tensor`` as float32 [C, H, W] if it has exactly the image ``shape``; else InvalidArgument."""
    if tensor is None:
        raise InvalidArgument(field, "required when baseline is 'tensor'")
    if tuple(tensor.shape) != tuple(shape):
        raise InvalidArgument(field, f"shape {list(tensor.shape)}; allowed: {list(shape)} (C, H, W, canonical layout)")
    return np.asarray(tensor, np.float32)


def straight_path(
    starts: NDArray[np.float32], ends: NDArray[np.float32], alphas: NDArray[np.floating]
) -> NDArray[np.float32]:
    """Points ``(1 − α)·starts + α·ends`` ([n, C, H, W] each, α [n]): exactly ``starts`` at α = 0
    and exactly ``ends`` at α = 1, so endpoint nodes score the true x′ and x."""
    alphas = np.asarray(alphas, np.float32).reshape(-1, *([1] * (starts.ndim - 1)))
    return ((1 - alphas) * starts + alphas * ends).astype(np.float32, copy=False)
