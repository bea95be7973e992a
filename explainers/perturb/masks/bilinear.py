"""Bilinear resize as a matrix: the upsampling shared by the grid and upsampled mask families and CAMs."""

from __future__ import annotations

import numpy as np


def bilinear_matrix(source: int, target: int, *, align_corners: bool = False) -> np.ndarray:
    """[target, source] weights of a bilinear resize from ``source`` to ``target`` samples:
    half-pixel centres with edge samples clamped (``align_corners=False``, as cv2 and ONNX
    Resize's half_pixel), or end samples aligned (``align_corners=True``, torch's
    ``UpsamplingBilinear2d``)."""
    matrix = np.zeros((target, source))
    if align_corners:
        centres = np.arange(target) * ((source - 1) / (target - 1) if target > 1 else 0.0)
    else:
        centres = (np.arange(target) + 0.5) * source / target - 0.5
    low = np.clip(np.floor(centres).astype(int), 0, source - 1)
    high = np.clip(low + 1, 0, source - 1)
    frac = np.clip(centres - np.floor(centres), 0, 1)
    frac[centres < 0] = 0.0
    rows = np.arange(target)
    np.add.at(matrix, (rows, low), 1 - frac)
    np.add.at(matrix, (rows, high), frac)
    return matrix
