"""Baselines: what a perturbed region is filled with, in the model's normalised input space."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from skimage.filters import gaussian

BASELINES = ("zero", "mean", "blur")
BLUR_SIGMA_FRACTION = 0.1
"""Blur σ as a fraction of the shorter image side (Fong et al. 2019 use up to 10%)."""


def make_baseline(image: NDArray[np.float32], kind: str) -> NDArray[np.float32]:
    """Baseline for ``image`` [C, H, W]: ``zero`` (0 in normalised space, i.e. the dataset
    mean colour for mean/std-normalised models), ``mean`` (the image's own per-channel mean), or
    ``blur`` (Gaussian blur, σ = 10% of the shorter side). Returns a new [C, H, W] float32 array."""
    if kind == "zero":
        return np.zeros_like(image, dtype=np.float32)
    if kind == "mean":
        return np.broadcast_to(image.mean(axis=(1, 2), keepdims=True), image.shape).astype(np.float32)
    if kind == "blur":
        return blur(image, BLUR_SIGMA_FRACTION)
    raise ValueError(f"unknown baseline {kind!r}; allowed: {', '.join(BASELINES)}")


def blur(image: NDArray[np.float32], sigma_fraction: float) -> NDArray[np.float32]:
    """Gaussian blur of ``image`` [C, H, W], σ = ``sigma_fraction`` × the shorter side (reflected edges)."""
    sigma = sigma_fraction * min(image.shape[1:])
    return gaussian(image, sigma=(0, sigma, sigma), mode="reflect", preserve_range=True,
                    channel_axis=None).astype(np.float32)
