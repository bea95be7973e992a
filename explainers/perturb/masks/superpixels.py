"""Superpixels: SLIC segmentation (the mask generator's domain), on/off samples, and painting.

LIME [48] explains an image through interpretable features: superpixel ``s`` is on (kept) or off
(replaced by a baseline). A sample is a binary vector ``z`` [S]; the perturbed image is built in
the graph by :func:`segment_masks` from ``z`` and the per-request
superpixel map. The sampling, distance and baseline conventions follow the ``lime`` package's
image explainer (``lime/lime_image.py``, Ribeiro et al. 2016).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper
from skimage.segmentation import slic

from ...graph.perturbation import MASK, PREFIX, MaskSource
from ...graph.perturbation import prefix_node as node

LAB_LIGHTNESS = 100.0
"""SLIC's colour distance is in Lab units (lightness 0–100) for 3-channel images; other channel
counts are scaled to the same range so that one ``compactness`` means the same for all."""


def slic_segments(image: NDArray[np.floating], n_segments: int, compactness: float) -> NDArray[np.int64]:
    """SLIC superpixels (Achanta et al. 2012, scikit-image) of a canonical image [C, H, W].

    The image is a normalised model input, not a photo, so it is first min-max rescaled to [0, 1]
    as a whole (one scale for all channels, so colours keep their relations; a constant image
    becomes 0). Three channels are then treated as RGB and compared in Lab, as scikit-image does by
    default (a BGR model swaps red and blue, which only changes the segmentation slightly); any
    other channel count (grayscale, 1 channel) is compared directly, scaled to [0, 100].

    Returns:
        int64 [H, W]: the superpixel of each pixel, labelled 0 .. S − 1 without gaps. S is near
        ``n_segments`` but not equal to it (SLIC starts from a grid and merges small pieces).
    """
    low, high = float(image.min()), float(image.max())
    scaled = (image - low) / (high - low) if high > low else np.zeros_like(image)
    if image.shape[0] == 3:
        labels = slic(np.moveaxis(scaled, 0, -1).astype(np.float64), n_segments=n_segments, compactness=compactness,
                      start_label=0, channel_axis=-1)
    else:
        labels = slic(np.moveaxis(scaled, 0, -1) * LAB_LIGHTNESS, n_segments=n_segments, compactness=compactness,
                      start_label=0, channel_axis=-1, convert2lab=False)
    _, dense = np.unique(labels, return_inverse=True)
    return dense.reshape(labels.shape).astype(np.int64)


def segment_count(segments: NDArray[np.integer]) -> int:
    return int(segments.max()) + 1


def segment_mean(image: NDArray[np.floating], segments: NDArray[np.integer]) -> NDArray[np.float32]:
    """Each pixel of ``image`` [C, H, W] replaced by its superpixel's mean (per channel): the
    baseline ``lime`` uses by default (``hide_color=None``). Returns float32 [C, H, W]."""
    flat = segments.ravel()
    counts = np.bincount(flat, minlength=segment_count(segments))
    sums = np.stack([np.bincount(flat, weights=channel.ravel(), minlength=len(counts)) for channel in image])
    return (sums / np.maximum(counts, 1))[:, segments].astype(np.float32)


SAMPLINGS = ("random", "quasi_random")


def sample_on_off(rng: np.random.Generator, samples: int, segments: int, sampling: str = "random") -> NDArray[np.bool_]:
    """``samples`` on/off vectors [N, S]: row 0 all on (the image itself), every other entry a fair
    coin flip. ``random``: independent flips, as ``lime``'s ``data_labels``; ``quasi_random``: a
    scrambled Sobol sequence (scipy.stats.qmc, one dimension per superpixel) thresholded at ½, so
    every superpixel — and every pair — is on in ≈ half of any 2^k consecutive samples (the
    surrogate's design is balanced sooner). All drawn at once, so the draws do not depend on how
    the samples are later batched."""
    if sampling == "quasi_random":
        from scipy.stats import qmc

        points = qmc.Sobol(segments, scramble=True, rng=rng).random_base2(max(0, int(np.ceil(np.log2(samples)))))
        on = points[:samples] < 0.5
    elif sampling == "random":
        on = rng.integers(0, 2, size=(samples, segments), dtype=bool)
    else:
        raise ValueError(f"unknown sampling {sampling!r}; allowed: {', '.join(SAMPLINGS)}")
    on[0] = True
    return on


def cosine_distance_to_all_on(on: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Cosine distance of each binary row [N, S] to the all-on vector: 1 − √(k/S) for k segments
    on (1 for the all-off row, like scikit-learn's ``cosine_distances``)."""
    return 1.0 - np.sqrt(on.sum(axis=1) / on.shape[1])


def paint(values: NDArray[np.floating], segments: NDArray[np.integer]) -> NDArray[np.float32]:
    """Per-superpixel values [T, S] painted onto their pixels: float32 [T, H, W]."""
    return np.asarray(values)[:, segments].astype(np.float32)


def segment_masks(height: int, width: int) -> MaskSource:
    """Inputs ``segments_on`` float [n, S] (1 keeps a superpixel) and ``segments`` int64 [H, W]
    (the superpixel of each pixel, fed once per request)."""
    p = PREFIX
    inits = [numpy_helper.from_array(np.array([-1, 1, height, width], np.int64), p + "mask_shape"),
             numpy_helper.from_array(np.array([-1], np.int64), p + "flat")]
    nodes = [
        node("Reshape", ["segments", p + "flat"], p + "segments_flat"),
        node("Gather", ["segments_on", p + "segments_flat"], p + "pixels_on", axis=1),
        node("Reshape", [p + "pixels_on", p + "mask_shape"], MASK),
    ]
    inputs = [helper.make_tensor_value_info("segments_on", TensorProto.FLOAT, ["n", "segments"]),
              helper.make_tensor_value_info("segments", TensorProto.INT64, [height, width])]
    return MaskSource("segments", inputs, nodes, inits, per_request=("segments",))
