"""Reading a GAP → linear head: the class weights CAM (Zhou et al. 2016) multiplies a layer by.

A head ``logits = w · GAP(layer) + b`` is recognised by following the layer's consumers on the way
to the class-score output: a global average pool (GlobalAveragePool, ReduceMean over the layer's H
and W axes — [1, 2] for an NHWC layer —, or an AveragePool over the whole map, see
:func:`~.layers.is_global_pool`), any Flatten/Reshape/Squeeze to [batch, K], then Gemm or MatMul
with a constant weight, an optional constant bias Add and a final Softmax/Sigmoid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import onnx
from numpy.typing import NDArray

from ..errors import FailedPrecondition
from .index import GraphIndex
from .layers import Layer, is_global_pool

_RESHAPES = ("Flatten", "Reshape", "Squeeze")
_FINAL = ("Softmax", "LogSoftmax", "Sigmoid", "Identity")


def linear_head_weights(model: onnx.ModelProto | GraphIndex, output: str, shapes: Mapping[str, tuple],
                        candidate: Layer, num_classes: int) -> NDArray[np.float64]:
    """The class weights w [classes, K] of the GAP → linear head after the layer ``candidate``
    ([batch, K, h, w], or [batch, h, w, K] in an NHWC graph).

    ``output`` is the class-score output, ``shapes`` the per-tensor shapes (batch first, e.g.
    probed by running the model). A head whose pooled maps are already the class scores
    (SqueezeNet's: K = ``num_classes``, nothing but reshapes and a final activation after the
    pool) gives w = I.

    Raises:
        FailedPrecondition: the head is anything else; the message says what the layer feeds.
    """
    head = _Head(GraphIndex.of(model), output, shapes)
    layer, channels = candidate.name, candidate.shape[0]
    pool = head.next(layer)
    if pool is None or not is_global_pool(pool, head.index, candidate, average_only=True):
        raise FailedPrecondition(f"CAM needs a global average pool followed by a linear layer after {layer!r}; "
                                 f"the layer feeds {head.describe(layer)}, not a global average pool")
    features = pool.output[0]
    while (node := head.next(features)) is not None and node.op_type in _RESHAPES:
        if math.prod(head.shape(node.output[0])[1:] or (channels,)) != channels:  # e.g. tf2onnx's [N, 1, 1, K]
            break
        features = node.output[0]
    linear = head.next(features)
    weights = head.linear_weights(linear, features, channels)
    if weights is None and channels == num_classes and head.stuck_before_output(features) is None:
        return np.eye(channels)  # the pooled maps are the class scores (SqueezeNet's head): w = I
    if weights is None:
        raise FailedPrecondition(f"CAM needs a linear layer after the global average pool of {layer!r}; the pooled "
                                 f"features feed {head.describe(features)}, not a Gemm or MatMul with constant "
                                 f"weights over their {channels} channels")
    stuck = head.stuck_before_output(linear.output[0])
    if stuck is not None:
        raise FailedPrecondition(f"CAM needs the linear layer after the global average pool of {layer!r} to give "
                                 f"the class scores; {stuck!r} feeds {head.describe(stuck)}, not a bias Add or a "
                                 "final Softmax/Sigmoid")
    return weights


class _Head:
    """Queries for :func:`linear_head_weights`: consumers on the path to ``output``, constants, shapes."""

    def __init__(self, index: GraphIndex, output: str, shapes: Mapping[str, tuple]):
        self.index, self.output, self.shapes = index, output, shapes
        self._to_output = index.upstream([output])

    def consumers(self, tensor: str) -> list[onnx.NodeProto]:
        """The nodes reading ``tensor`` on the way to the output."""
        return [node for node in self.index.consumers_of(tensor) if any(o in self._to_output for o in node.output)]

    def next(self, tensor: str) -> onnx.NodeProto | None:
        """The one node consuming ``tensor`` on the way to the output (None if several or none)."""
        nodes = self.consumers(tensor)
        return nodes[0] if len(nodes) == 1 else None

    def describe(self, tensor: str) -> str:
        """What consumes ``tensor`` on the way to the output, for messages."""
        nodes = [f"{node.op_type} {node.name!r}" if node.name else node.op_type for node in self.consumers(tensor)]
        if not nodes:
            return "nothing on the way to the class scores"
        return nodes[0] if len(nodes) == 1 else f"{len(nodes)} nodes ({', '.join(nodes)})"

    def shape(self, tensor: str) -> tuple:
        return tuple(self.shapes.get(tensor, ()))

    def linear_weights(self, node: onnx.NodeProto | None, features: str, channels: int) -> NDArray[np.float64] | None:
        """[classes, K] of ``features`` [batch, K] @ a constant, or None if ``node`` is not that."""
        if node is None or len(node.input) < 2 or node.input[0] != features:
            return None
        matrix = self.index.constant(node.input[1])
        if matrix is None:
            return None
        matrix = matrix.astype(np.float64)
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Gemm" and not attributes.get("transA", 0):
            matrix = matrix if attributes.get("transB", 0) else matrix.T
            matrix = matrix if attributes.get("alpha", 1.0) == 1.0 else attributes["alpha"] * matrix
        elif node.op_type == "MatMul" and matrix.ndim == 2:
            matrix = matrix.T
        else:
            return None
        return matrix if matrix.ndim == 2 and matrix.shape[1] == channels else None

    def stuck_before_output(self, tensor: str) -> str | None:
        """None if ``tensor`` is the class-score output up to a constant bias Add and a final
        activation; else the tensor where the walk stopped."""
        while tensor != self.output:
            node = self.next(tensor)
            bias = node is not None and node.op_type == "Add" and any(
                self.index.constant(i) is not None for i in node.input)
            if node is None or not (bias or node.op_type in _FINAL):
                return tensor
            tensor = node.output[0]
        return None
