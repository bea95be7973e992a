"""How big the photo becomes before the centre crop, for each ``resize_mode``, and with which PIL filter.

Every mode ends in the same centre crop to the model's H × W, with torchvision's offsets
``round((size − crop) / 2)``; a resized image smaller than the input (``none`` on a small photo,
``long_side_pad``) gives a negative offset, and PIL fills what lies outside the photo with black.
:class:`~explainers.model.preprocessing.Geometry` inverts all of them alike.
"""

from __future__ import annotations

import math

from PIL import Image

from .config import Preprocessing

FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "antialias": Image.Resampling.LANCZOS,  # PIL's Image.ANTIALIAS was LANCZOS
}
"""``Preprocessing.interpolation`` → PIL filter (PIL widens every filter but nearest when shrinking:
the antialiasing torchvision's ``Resize(antialias=True)`` reproduces)."""


def short_side_target(pre: Preprocessing, size: tuple[int, int]) -> int | None:
    """The short side before the crop: ``resize``, else ``floor(min(H, W) / crop_pct)`` (timm), else None."""
    if pre.resize is not None:
        return pre.resize
    if pre.crop_pct is not None:
        return math.floor(min(size) / pre.crop_pct)
    return None


def resized_size(pre: Preprocessing, original: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    """(height, width) the photo ``original`` (H0, W0) is resized to, for a model input ``size`` (H, W)."""
    (h0, w0), (height, width) = original, size
    mode, short = pre.mode, short_side_target(pre, size)
    if mode == "none":
        return h0, w0
    if mode == "long_side_pad":
        factor = min(height / h0, width / w0)
        return max(1, round(h0 * factor)), max(1, round(w0 * factor))
    if mode == "squash":
        if short is None:
            return height, width
        factor = short / min(height, width)  # an H:W-shaped image whose short side is `short`
        return max(height, int(height * factor)), max(width, int(width * factor))
    short = short if short is not None else min(height, width)
    shortest = min(h0, w0)  # torchvision's Resize(int): the long side is truncated, as in every pretrained recipe
    return max(height, int(h0 * short / shortest)), max(width, int(w0 * short / shortest))
