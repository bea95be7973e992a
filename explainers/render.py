"""Rendering heatmaps for people: normalisation, a colormap, overlays, PNG bytes.

Kept apart from the methods on purpose: heatmaps are data (signed float32); how they are shown
(absolute value or signed, which colormap, how opaque) is a separate, explicit choice.
"""

from __future__ import annotations

import io

import numpy as np
from numpy.typing import NDArray
from PIL import Image

# Control points of the colormaps: a jet-like ramp for unsigned maps; for signed maps, saturated
# blue → cyan for negative and red → yellow for positive values (never white: a weak value must
# not wash the picture out; opacity already encodes strength).
_SEQUENTIAL = np.array(
    [[0.05, 0.03, 0.53], [0.0, 0.45, 0.9], [0.1, 0.85, 0.85], [0.55, 0.95, 0.3], [1.0, 0.85, 0.0], [0.85, 0.1, 0.05]]
)
_DIVERGING = np.array([[0.0, 0.85, 1.0], [0.05, 0.25, 0.9], [0.85, 0.05, 0.05], [1.0, 0.9, 0.0]])


def normalise(heatmap: NDArray[np.floating], *, signed: bool = False) -> NDArray[np.float32]:
    """Scale to [0, 1] (or [-1, 1] when ``signed``, keeping 0 at 0) using robust 99.5% bounds.

    NaN (outside the model's view) stays NaN.
    """
    values = np.asarray(heatmap, np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros_like(values, np.float32)
    if signed:
        bound = np.percentile(np.abs(finite), 99.5) or 1.0
        return np.clip(values / bound, -1, 1).astype(np.float32)
    low, high = np.percentile(finite, 0.5), np.percentile(finite, 99.5)
    scale = high - low if high > low else 1.0
    return np.clip((values - low) / scale, 0, 1).astype(np.float32)


def colorize(normalised: NDArray[np.floating], *, signed: bool = False) -> NDArray[np.float32]:
    """[H, W] in [0, 1] (or [-1, 1] when signed) → RGB float [H, W, 3] in [0, 1]."""
    values = np.nan_to_num(normalised)
    if signed:
        # [-1, 0) → the blue half, [0, 1] → the red half of _DIVERGING
        points, position = _DIVERGING, np.where(values < 0, (1 + values) / 3, 2 / 3 + values / 3)
    else:
        points, position = _SEQUENTIAL, values
    scaled = np.clip(position, 0, 1) * (len(points) - 1)
    low = np.minimum(np.floor(scaled).astype(int), len(points) - 2)
    frac = (scaled - low)[..., None]
    return (points[low] * (1 - frac) + points[low + 1] * frac).astype(np.float32)


def overlay(
    image_rgb: NDArray[np.uint8], heatmap: NDArray[np.floating], *, signed: bool = False, alpha: float = 0.7
) -> NDArray[np.uint8]:
    """Blend a heatmap [H, W] (same grid as ``image_rgb`` [H, W, 3]) over the image.

    Opacity grows with |attribution| (``alpha`` at the strongest), so unimportant pixels show the
    image unchanged; NaN pixels (outside the model's view) too.
    """
    if image_rgb.shape[:2] != heatmap.shape:
        raise ValueError(f"heatmap {heatmap.shape} and image {image_rgb.shape[:2]} differ in size")
    norm = normalise(heatmap, signed=signed)
    colors = colorize(norm, signed=signed)
    weight = alpha * np.sqrt(np.abs(np.nan_to_num(norm)))[..., None]
    weight[np.isnan(norm)] = 0.0
    blended = image_rgb.astype(np.float32) / 255 * (1 - weight) + colors * weight
    return np.clip(blended * 255 + 0.5, 0, 255).astype(np.uint8)


def png_bytes(rgb: NDArray[np.uint8]) -> bytes:
    """Encode uint8 [H, W, 3] (or [H, W]) as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def canvas_from_tensor(image: NDArray[np.float32]) -> NDArray[np.uint8]:
    """A viewable RGB picture [H, W, 3] of a canonical tensor [C, H, W], min-max stretched."""
    picture = image.transpose(1, 2, 0)
    if picture.shape[2] == 1:
        picture = np.repeat(picture, 3, axis=2)
    picture = picture[:, :, :3]
    low, high = float(picture.min()), float(picture.max())
    return ((picture - low) / (high - low if high > low else 1.0) * 255).astype(np.uint8)
