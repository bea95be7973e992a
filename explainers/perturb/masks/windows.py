"""Sliding windows (occlusion): the boxes, their graph prefix :func:`window_masks`, and the aggregator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from ...graph.perturbation import MASK, PREFIX, MaskSource
from ...graph.perturbation import prefix_node as node


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


def window_masks(height: int, width: int) -> MaskSource:
    """Input ``windows`` int64 [n, 4] = (top, left, bottom, right): the mask is 0 inside the box."""
    rows = np.arange(height, dtype=np.int64).reshape(1, 1, height, 1)
    cols = np.arange(width, dtype=np.int64).reshape(1, 1, 1, width)
    inits = [numpy_helper.from_array(rows, PREFIX + "rows"), numpy_helper.from_array(cols, PREFIX + "cols"),
             numpy_helper.from_array(np.array([-1, 1, 1, 1], np.int64), PREFIX + "box_shape")]
    nodes = []
    for index, name in enumerate(("top", "left", "bottom", "right")):
        nodes += [
            node("Slice", ["windows", PREFIX + f"s{index}", PREFIX + f"e{index}", PREFIX + "axis1"], PREFIX + name + "_col"),
            node("Reshape", [PREFIX + name + "_col", PREFIX + "box_shape"], PREFIX + name),
        ]
        inits += [numpy_helper.from_array(np.array([index], np.int64), PREFIX + f"s{index}"),
                  numpy_helper.from_array(np.array([index + 1], np.int64), PREFIX + f"e{index}")]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), PREFIX + "axis1"))
    p = PREFIX
    nodes += [
        node("GreaterOrEqual", [p + "rows", p + "top"], p + "below_top"),
        node("Less", [p + "rows", p + "bottom"], p + "above_bottom"),
        node("GreaterOrEqual", [p + "cols", p + "left"], p + "right_of_left"),
        node("Less", [p + "cols", p + "right"], p + "left_of_right"),
        node("And", [p + "below_top", p + "above_bottom"], p + "in_rows"),
        node("And", [p + "right_of_left", p + "left_of_right"], p + "in_cols"),
        node("And", [p + "in_rows", p + "in_cols"], p + "inside"),
        node("Not", [p + "inside"], p + "outside"),
        node("Cast", [p + "outside"], MASK, to=TensorProto.FLOAT),
    ]
    inputs = [helper.make_tensor_value_info("windows", TensorProto.INT64, ["n", 4])]
    return MaskSource("windows", inputs, nodes, inits)
