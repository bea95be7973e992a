"""Which intermediate tensors are layers a user can explain (CAM targets).

A candidate layer is a 4-D float activation [batch, channels, h, w] computed from the input. The
default CAM layer is the input of the last global pooling (GlobalAveragePool/GlobalMaxPool, or a
ReduceMean/ReduceMax over both spatial axes) — "the last 4-D activation before global pooling".
Heads without one (VGG: pooling to 2×2, flatten, MLP) fall back to the last activation larger
than 1×1 not produced by a pooling op (the last ReLU of VGG's features, as pytorch-grad-cam users pick).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import onnx

from .index import GraphIndex

_GLOBAL_POOLS = ("GlobalAveragePool", "GlobalMaxPool")
_SPATIAL_REDUCES = ("ReduceMean", "ReduceMax")


@dataclass(frozen=True)
class Layer:
    """``shape`` is (channels, height, width) for one sample; ``op_type`` produced it."""

    name: str
    shape: tuple[int, int, int]
    op_type: str


def candidate_layers(model: onnx.ModelProto | GraphIndex, shapes: Mapping[str, tuple],
                     input_name: str) -> list[Layer]:
    """4-D float activations depending on the input, in topological order.

    ``shapes``: per-sample-resolved shapes (batch dim first), e.g. probed by running the model.
    """
    index = GraphIndex.of(model)
    reached = index.downstream([input_name])
    layers = []
    for node in index.nodes:
        if not any(name in reached for name in node.output):
            continue
        for name in node.output:
            shape = shapes.get(name)
            if shape is not None and len(shape) == 4 and all(isinstance(d, int) for d in shape[1:]):
                layers.append(Layer(name, tuple(int(d) for d in shape[1:]), node.op_type))
    return layers


def default_cam_layer(model: onnx.ModelProto | GraphIndex, layers: list[Layer]) -> str | None:
    """The input of the last global pooling over a candidate layer, else the last spatial layer."""
    by_name = {layer.name: layer for layer in layers}
    index = GraphIndex.of(model)
    chosen = None
    for node in index.nodes:
        source = node.input[0] if node.input else None
        if source not in by_name:
            continue
        if node.op_type in _GLOBAL_POOLS or (node.op_type in _SPATIAL_REDUCES and _reduces_hw(node, index)):
            chosen = source
    if chosen is not None:
        return chosen
    spatial = [layer for layer in layers if layer.shape[1] * layer.shape[2] > 1]
    unpooled = [layer for layer in spatial if "Pool" not in layer.op_type]
    return (unpooled or spatial)[-1].name if spatial else None


def _reduces_hw(node: onnx.NodeProto, index: GraphIndex) -> bool:
    axes = next((list(a.ints) for a in node.attribute if a.name == "axes"), None)
    if axes is None and len(node.input) > 1 and node.input[1] in index.initializers:
        axes = index.constant(node.input[1]).tolist()
    return axes is not None and {a % 4 for a in axes} == {2, 3}
