"""Sliding windows: a mask generator (boxes, drawn in the graph by ``window_masks``) and its aggregator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class SlidingWindows:
    """Square windows of side ``window`` starting every ``stride`` pixels, clipped at the border.

    ``boxes``: int [N, 4] rows (top, left, bottom, right), N = ⌈H/s⌉·⌈W/s⌉. With
    ``stride <= window`` every pixel is covered by at least one window.
    """

    boxes: NDArray[np.int64]

    @classmethod
    def cover(cls, size: tuple[int, int], window: int, stride: int) -> SlidingWindows:
        height, width = size
        tops, lefts = np.arange(0, height, stride), np.arange(0, width, stride)
        top, left = (grid.ravel() for grid in np.meshgrid(tops, lefts, indexing="ij"))
        boxes = np.stack([top, left, np.minimum(top + window, height), np.minimum(left + window, width)], axis=1)
        return cls(boxes.astype(np.int64))

    def __len__(self) -> int:
        return len(self.boxes)


class WindowDeltas:
    """Aggregator: per-pixel mean, over the windows covering it, of a per-window value [N, T]."""

    def __init__(self, windows: SlidingWindows, size: tuple[int, int], targets: int):
        self.windows = windows
        self.sums = np.zeros((targets, *size), np.float64)
        self.counts = np.zeros(size, np.int64)

    def add(self, start: int, values: NDArray[np.floating]) -> None:
        """Accumulate ``values`` [n, T] of windows ``start .. start + n``."""
        for (top, left, bottom, right), value in zip(self.windows.boxes[start:], values):
            self.sums[:, top:bottom, left:right] += np.asarray(value, np.float64)[:, None, None]
            self.counts[top:bottom, left:right] += 1

    def heatmaps(self) -> NDArray[np.float32]:
        """[T, H, W]; pixels not yet covered are 0."""
        return (self.sums / np.maximum(self.counts, 1)).astype(np.float32)
