"""How similar two heatmaps are: the four measures of Adebayo et al. 2018 ("Sanity Checks for
Saliency Maps", NeurIPS, §3: rank correlation with and without absolute values, SSIM and HOG
similarity).

For maps a, b [H, W]:

* ``spearman``: Spearman's ρ of the raw values (signs kept: a map whose sign flips correlates −1);
* ``spearman_abs``: ρ of |a| and |b| (what a reader of a colour map of the magnitude sees);
* ``ssim``: the structural similarity (Wang et al. 2004) of |a| and |b| each min-max normalised to
  [0, 1] (window 7, or the largest odd side that fits a smaller map);
* ``hog``: Pearson's r of the histogram-of-oriented-gradients features (Dalal & Triggs 2005; 9
  orientations, an 8 × 8 grid of cells, 2 × 2 cells per block) of the same normalised maps.

A constant map has no ranking, gradient or structure to share: a correlation with it is defined as
0 (no similarity), not NaN; :func:`similarities` counts how often that happened.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import stats
from skimage.feature import hog
from skimage.metrics import structural_similarity

MEASURES = ("spearman", "spearman_abs", "ssim", "hog")
"""The measures, in the order of :func:`similarities`' keys."""


def _is_constant(values: NDArray) -> bool:
    return bool(np.ptp(values) == 0)


def rank_correlation(a: NDArray, b: NDArray) -> float:
    """Spearman's ρ of the flattened maps; 0 when either is constant."""
    if _is_constant(a) or _is_constant(b):
        return 0.0
    return float(stats.spearmanr(a.ravel(), b.ravel()).statistic)


def unit_range(a: NDArray) -> NDArray[np.float64]:
    """|a| min-max normalised to [0, 1] (all zeros for a constant map)."""
    magnitude = np.abs(a.astype(np.float64))
    low, span = magnitude.min(), np.ptp(magnitude)
    return (magnitude - low) / span if span > 0 else np.zeros_like(magnitude)


def ssim(a: NDArray, b: NDArray) -> float:
    """SSIM of the [0, 1]-normalised magnitudes of two maps [H, W] (H, W >= 3); 0 when either is constant
    (normalising would turn both into zeros, and two constant maps would look identical)."""
    if _is_constant(a) or _is_constant(b):
        return 0.0
    side = min(a.shape)
    window = min(7, side if side % 2 else side - 1)
    return float(structural_similarity(unit_range(a), unit_range(b), data_range=1.0, win_size=window))


def hog_similarity(a: NDArray, b: NDArray) -> float:
    """Pearson's r of the HOG features of the [0, 1]-normalised magnitudes (maps [H, W], H, W >= 4);
    0 when either feature vector is constant."""
    cell = (max(1, a.shape[0] // 8), max(1, a.shape[1] // 8))
    features = [hog(unit_range(m), orientations=9, pixels_per_cell=cell, cells_per_block=(2, 2)) for m in (a, b)]
    if _is_constant(features[0]) or _is_constant(features[1]):
        return 0.0
    return float(stats.pearsonr(features[0], features[1]).statistic)


def similarities(original: NDArray[np.floating], other: NDArray[np.floating]) -> tuple[dict[str, NDArray[np.float32]], int]:
    """Every measure of each target's maps: ``original``, ``other`` [T, H, W] → ({measure: [T]},
    the number of targets where either map was constant)."""
    rows: dict[str, list[float]] = {name: [] for name in MEASURES}
    constant = 0
    for a, b in zip(original, other):
        constant += _is_constant(a) or _is_constant(b)
        rows["spearman"].append(rank_correlation(a, b))
        rows["spearman_abs"].append(rank_correlation(np.abs(a), np.abs(b)))
        rows["ssim"].append(ssim(a, b))
        rows["hog"].append(hog_similarity(a, b))
    return {name: np.asarray(values, np.float32) for name, values in rows.items()}, constant
