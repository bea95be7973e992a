"""Pixels removed in rank order (deletion/insertion metrics): the rank maps and their graph prefix.

Each pixel of a map gets a rank ``r`` ∈ {0, …, H·W − 1} (0 = removed first). Sample i keeps the
pixels of target tᵢ's rank map whose rank is at least kᵢ: ``m_i = [r_{tᵢ} ≥ kᵢ]``. The rank maps
[T, H, W] are fed once per request; each sample is only two numbers (tᵢ, kᵢ).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from ...graph.perturbation import MASK, PREFIX, MaskSource
from ...graph.perturbation import prefix_node as node

ORDERS = ("morf", "lerf")
"""morf: most relevant first; lerf: least relevant first."""


def pixel_ranks(heatmaps: NDArray[np.floating], order: str, rng: np.random.Generator) -> NDArray[np.float32]:
    """Rank of each pixel of ``heatmaps`` [T, H, W] in removal order, float32 [T, H, W] (exact integers).

    ``morf``: the largest value gets rank 0; ``lerf``: the smallest. Ties are broken at random
    (``rng``), so a constant map removes pixels in a random order rather than in raster order.
    """
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; allowed: {', '.join(ORDERS)}")
    targets, height, width = heatmaps.shape
    ranks = np.empty((targets, height * width), np.float32)
    for t, heatmap in enumerate(heatmaps.reshape(targets, -1).astype(np.float64)):
        key = -heatmap if order == "morf" else heatmap
        removal = np.lexsort((rng.random(key.size), key))  # by key, then by a random tie-breaker
        ranks[t, removal] = np.arange(key.size, dtype=np.float32)
    return ranks.reshape(targets, height, width)


def ranked_masks(height: int, width: int) -> MaskSource:
    """Inputs ``rank_target`` int64 [n], ``removed`` float [n] (pixels removed, kᵢ) and the
    per-request ``pixel_ranks`` float [T, H, W]: the mask keeps pixels with rank ≥ kᵢ."""
    p = PREFIX
    inits = [numpy_helper.from_array(np.array([-1, 1, 1], np.int64), p + "removed_shape"),
             numpy_helper.from_array(np.array([-1, 1, height, width], np.int64), p + "mask_shape")]
    nodes = [
        node("Gather", ["pixel_ranks", "rank_target"], p + "sample_ranks", axis=0),
        node("Reshape", ["removed", p + "removed_shape"], p + "removed_column"),
        node("GreaterOrEqual", [p + "sample_ranks", p + "removed_column"], p + "kept"),
        node("Cast", [p + "kept"], p + "kept_float", to=TensorProto.FLOAT),
        node("Reshape", [p + "kept_float", p + "mask_shape"], MASK),
    ]
    inputs = [helper.make_tensor_value_info("rank_target", TensorProto.INT64, ["n"]),
              helper.make_tensor_value_info("removed", TensorProto.FLOAT, ["n"]),
              helper.make_tensor_value_info("pixel_ranks", TensorProto.FLOAT, ["targets", height, width])]
    return MaskSource("ranked", inputs, nodes, inits, per_request=("pixel_ranks",))
