"""Dense masks: one full-resolution mask per sample, fed as is (infidelity's Gaussian perturbations).

H·W floats per sample rather than a C·H·W image; the blend ``m ⊙ image + (1 − m) ⊙ baseline`` still
happens in the graph, and ``m`` may be any real number (``1 − m`` moves a pixel towards, or past,
the baseline).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from ...graph.perturbation import MASK, PREFIX, MaskSource
from ...graph.perturbation import prefix_node as node


def dense_masks(height: int, width: int) -> MaskSource:
    """Input ``dense_mask`` float [n, H, W]: the mask itself."""
    inits = [numpy_helper.from_array(np.array([-1, 1, height, width], np.int64), PREFIX + "dense_shape")]
    nodes = [node("Reshape", ["dense_mask", PREFIX + "dense_shape"], MASK)]
    inputs = [helper.make_tensor_value_info("dense_mask", TensorProto.FLOAT, ["n", height, width])]
    return MaskSource("dense", inputs, nodes, inits)
