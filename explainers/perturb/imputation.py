"""Noisy linear imputation (Rong et al. 2022, ROAD, ICML, §4): removed pixels become the weighted
average of their neighbours, found by one sparse linear solve, plus a little noise.

For the removed pixels U of an image [C, H, W] and each channel, the imputed values solve

    vᵢ = Σ_{j ∈ N(i)} (w_ij / Wᵢ) · v_j      for every i ∈ U,    Wᵢ = Σ_{j ∈ N(i)} w_ij,

where N(i) are i's in-image 8-neighbours (removed or not; kept ones are fixed at their values),
w = 1/6 for the 4 direct and 1/12 for the 4 diagonal neighbours (the paper's weights). The system
(I − P_UU) v_U = P_UK x_K is sparse and, as long as one pixel is kept, non-singular (each connected
group of removed pixels borders a kept one); one LU factorisation serves every channel. Then
N(0, σ²) noise is added to the imputed values only. A linear function of the position is imputed
exactly wherever all 8 neighbours are inside the image.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.sparse.linalg import splu

NEIGHBOURS = ((-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
              (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12))
"""(dy, dx, weight) of the 8 neighbours."""


def impute(image: NDArray[np.floating], removed: NDArray[np.bool_], noise: float,
           rng: np.random.Generator) -> NDArray[np.float32]:
    """``image`` [C, H, W] with the pixels where ``removed`` [H, W] is True imputed (module doc).

    Raises:
        ValueError: every pixel is removed (nothing to impute from).
    """
    channels, height, width = image.shape
    if removed.all():
        raise ValueError("every pixel is removed: nothing to impute from")
    result = np.array(image, np.float64, copy=True)
    unknown = np.flatnonzero(removed.ravel())
    if not len(unknown):
        return result.astype(np.float32)
    index = np.full(height * width, -1, np.int64)
    index[unknown] = np.arange(len(unknown))
    rows, cols = np.divmod(unknown, width)
    total_weight = np.zeros(len(unknown))
    entries_row, entries_col, entries_weight, known_row, known_pixel, known_weight = [], [], [], [], [], []
    for dy, dx, weight in NEIGHBOURS:
        r, c = rows + dy, cols + dx
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        i = np.flatnonzero(inside)
        neighbour = r[inside] * width + c[inside]
        total_weight[i] += weight
        is_unknown = index[neighbour] >= 0
        entries_row.append(i[is_unknown])
        entries_col.append(index[neighbour[is_unknown]])
        entries_weight.append(np.full(is_unknown.sum(), weight))
        known_row.append(i[~is_unknown])
        known_pixel.append(neighbour[~is_unknown])
        known_weight.append(np.full((~is_unknown).sum(), weight))
    n = len(unknown)
    weights = np.concatenate(entries_weight) / total_weight[np.concatenate(entries_row)]
    system = sp.eye(n, format="csc") - sp.csc_matrix((weights, (np.concatenate(entries_row),
                                                                np.concatenate(entries_col))), shape=(n, n))
    flat = result.reshape(channels, -1)
    known_rows = np.concatenate(known_row)
    known_weights = np.concatenate(known_weight) / total_weight[known_rows]
    right = np.zeros((n, channels))
    np.add.at(right, known_rows, (known_weights[:, None] * flat[:, np.concatenate(known_pixel)].T))
    solved = splu(system).solve(right)  # [n, C]
    if noise > 0:
        solved += rng.normal(0.0, noise, solved.shape)
    flat[:, unknown] = solved.T
    return result.astype(np.float32)
