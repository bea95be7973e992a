"""Which intermediate tensors are layers a user can explain (CAM targets), and in which layout.

A candidate layer is a 4-D float activation computed from the input, [batch, channels, h, w] or,
where the exporter kept TensorFlow's layout, [batch, h, w, channels]. Layouts are followed through
the graph (:func:`tensor_layouts`): the input has the model's layout, Conv/pooling/normalisation
ops produce NCHW, a ``Transpose`` permutes its input's layout (tf2onnx wraps every convolution of
an NHWC graph in two of them), element-wise ops and the like keep it, and a Reshape/Flatten/Squeeze
forgets it (its output counts as NCHW, as every 4-D tensor did before layouts were followed).

The default CAM layer is the last activation with a spatial extent (h > 1 and w > 1) that feeds a
global pooling, whatever the exporter made of it: GlobalAveragePool/GlobalMaxPool, ReduceMean/
ReduceMax over the layer's own spatial axes ([2, 3] in NCHW, [1, 2] in NHWC), or an AveragePool/
MaxPool whose kernel covers the whole map. Heads without one (VGG: pooling to 2×2, flatten, MLP)
use the last such activation that reaches a Flatten/Reshape to [batch, features] through pooling
ops only (the last ReLU of VGG's features, as pytorch-grad-cam users pick). Anything else — a
Reshape after the pooling, an attention tensor — is never a default: :func:`missing_cam_layer`
says so and lists the candidates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from numpy.typing import NDArray

from ..errors import listing
from .index import GraphIndex

NCHW, NHWC = "NCHW", "NHWC"
_NCHW_OPS = ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool",
             "BatchNormalization", "InstanceNormalization", "LRN", "DepthToSpace", "SpaceToDepth")
"""Ops whose 4-D output is NCHW by the ONNX specification."""
_LAYOUT_FORGETTING = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Gather", "Expand", "Tile", "Einsum")
"""Ops after which a 4-D output's axes need not mean what the input's meant."""
_POOLS = ("MaxPool", "AveragePool")
_FLATTENS = ("Flatten", "Reshape")


@dataclass(frozen=True)
class Layer:
    """``shape`` is (channels, height, width) for one sample whatever the ``layout`` of the tensor in
    the graph; ``op_type`` produced it."""

    name: str
    shape: tuple[int, int, int]
    op_type: str
    layout: str = NCHW

    def canonical(self, values: NDArray) -> NDArray:
        """This layer's values [..., *per-sample shape in its layout] → [..., channels, h, w]."""
        return np.moveaxis(values, -1, -3) if self.layout == NHWC else values


def tensor_layouts(model: onnx.ModelProto | GraphIndex, shapes: Mapping[str, tuple], input_name: str,
                   input_layout: str = NCHW) -> dict[str, str]:
    """The layout (a permutation of "NCHW") of every 4-D tensor computed from the input whose layout
    follows from the graph; tensors after a Reshape and the like are absent (unknown).

    ``shapes``: per-tensor shapes with the batch first (probed by running the model).
    """
    index = GraphIndex.of(model)
    layouts = {input_name: input_layout}
    for node in index.nodes:
        known = [layouts[name] for name in node.input if name in layouts]
        if not known:
            continue
        for output in node.output:
            if len(shapes.get(output, ())) != 4:
                continue
            if node.op_type in _NCHW_OPS:
                layouts[output] = NCHW
            elif node.op_type == "Transpose":
                perm = _attribute(node, "perm", [3, 2, 1, 0])
                layouts[output] = "".join(known[0][axis] for axis in perm)
            elif node.op_type not in _LAYOUT_FORGETTING:
                layouts[output] = known[0]
    return layouts


def candidate_layers(model: onnx.ModelProto | GraphIndex, shapes: Mapping[str, tuple], input_name: str,
                     input_layout: str = NCHW) -> list[Layer]:
    """4-D float activations depending on the input, in topological order, with their layout (NHWC
    where :func:`tensor_layouts` shows it, else NCHW).

    ``shapes``: per-sample-resolved shapes (batch dim first), e.g. probed by running the model.
    """
    index = GraphIndex.of(model)
    reached = index.downstream([input_name])
    layouts = tensor_layouts(index, shapes, input_name, input_layout)
    layers = []
    for node in index.nodes:
        if not any(name in reached for name in node.output):
            continue
        for name in node.output:
            shape = shapes.get(name)
            if shape is not None and len(shape) == 4 and all(isinstance(d, int) for d in shape[1:]):
                layout = NHWC if layouts.get(name) == NHWC else NCHW
                c, h, w = (shape[3], shape[1], shape[2]) if layout == NHWC else shape[1:]
                layers.append(Layer(name, (int(c), int(h), int(w)), node.op_type, layout))
    return layers


def default_cam_layer(model: onnx.ModelProto | GraphIndex, layers: list[Layer], shapes: Mapping[str, tuple]
                      ) -> str | None:
    """The last spatial layer (h, w > 1) that a global pooling reads, else the last one that reaches a
    flatten to [batch, features] through pooling ops only; None when there is neither.

    ``shapes``: per-tensor shapes with the batch first (to tell a flatten from other reshapes)."""
    index = GraphIndex.of(model)
    spatial = {layer.name: layer for layer in layers if layer.shape[1] > 1 and layer.shape[2] > 1}
    pooled = [node.input[0] for node in index.nodes
              if node.input and node.input[0] in spatial and is_global_pool(node, index, spatial[node.input[0]])]
    if pooled:
        return pooled[-1]
    flattened = [source for node in index.nodes if node.op_type in _FLATTENS and node.input
                 and len(shapes.get(node.output[0], ())) == 2
                 and (source := _unpooled(index, node.input[0], spatial)) is not None]
    return flattened[-1] if flattened else None


def is_global_pool(node: onnx.NodeProto, index: GraphIndex, layer: Layer, *, average_only: bool = False) -> bool:
    """Whether ``node`` pools ``layer`` over its whole spatial extent (average pooling only, with
    ``average_only``): Global*Pool, ReduceMean/ReduceMax over the layer's h and w axes, or an
    AveragePool/MaxPool whose kernel is the map without padding."""
    kind = node.op_type
    if average_only and kind in ("GlobalMaxPool", "ReduceMax", "MaxPool"):
        return False
    if kind in ("GlobalAveragePool", "GlobalMaxPool"):
        return True
    if kind in ("ReduceMean", "ReduceMax"):
        axes = _attribute(node, "axes", None)
        if axes is None and len(node.input) > 1:
            constant = index.constant(node.input[1])
            axes = None if constant is None else constant.tolist()
        spatial_axes = {1, 2} if layer.layout == NHWC else {2, 3}
        return axes is not None and {a % 4 for a in axes} == spatial_axes and len(axes) == 2
    if kind in _POOLS:
        return (list(_attribute(node, "kernel_shape", [])) == list(layer.shape[1:])
                and not any(_attribute(node, "pads", [])))
    return False


def missing_cam_layer(layers: list[Layer]) -> str:
    """The message for a model without a default CAM layer: what was looked for, and the candidates."""
    described = [f"{layer.name} ({'×'.join(map(str, layer.shape))})" for layer in layers]
    return ("the model has no default CAM layer: no activation with a spatial extent (h, w > 1) feeds a global "
            "pooling (GlobalAveragePool, ReduceMean over h and w, an AveragePool over the whole map) or a flatten "
            "into the classifier head; name one with params.layer (or cam_layer in the model config). "
            f"4-D activations [channels×h×w]: {listing(described)}")


def _unpooled(index: GraphIndex, tensor: str, spatial: Mapping[str, Layer]) -> str | None:
    """The spatial layer ``tensor`` is, or is pooled from through MaxPool/AveragePool ops; else None."""
    while (producer := index.producer(tensor)) is not None and producer.op_type in _POOLS:
        tensor = producer.input[0]
    return tensor if tensor in spatial else None


def _attribute(node: onnx.NodeProto, name: str, default):
    return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)
