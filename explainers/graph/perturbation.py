"""Perturbation-prefixed graphs: the perturbed batch is built inside the ONNX model.

Perturbation methods evaluate hundreds to thousands of masked copies of one image. Rather than
ship each copy to onnxruntime (600 KB per 224×224 sample), a prefix in front of the classifier
takes the image and the baseline once per request and, per sample, only a small mask
description, and builds ``x_i = m_i ⊙ image + (1 − m_i) ⊙ baseline`` in the graph. On CUDA the
image and baseline stay on the device (bound once); only kilobytes move per batch.

A :class:`MaskSource` describes how per-sample inputs become the mask ``m`` [n, 1, H, W]. Each
mask family owns its source next to its numpy sampler and aggregator, in
:mod:`explainers.perturb.masks` (windows for occlusion, superpixels for LIME, grids for RISE,
upsampled low-resolution maps for Score-CAM and extremal perturbation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx
from onnx import TensorProto, helper

from ..errors import FailedPrecondition
from .index import GraphIndex, default_opset

SOURCE_IMAGE = "source_image"
SOURCE_BASELINE = "source_baseline"
MASK = "perturbation_mask"
PREFIX = "perturb/"
"""Names of the nodes and initializers a prefix adds start with this."""
MIN_OPSET = 12
"""The oldest opset whose forms every mask source emits (``Slice`` with inputs, ``GreaterOrEqual``).
Older models are converted when they are loaded (:mod:`explainers.graph.exports`)."""


@dataclass(frozen=True)
class MaskSource:
    """Nodes computing ``MASK`` [n, 1, H, W] from ``inputs``; ``per_request`` names the inputs that
    are the same for every batch of a request (fed once, bound on the device on CUDA)."""

    name: str
    inputs: list[onnx.ValueInfoProto]
    nodes: list[onnx.NodeProto]
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    per_request: tuple[str, ...] = ()


def prefix_node(op: str, inputs: list[str], output: str, **attrs) -> onnx.NodeProto:
    """One node of a prefix, named after its output."""
    return helper.make_node(op, inputs, [output], name=PREFIX + output, **attrs)


def prefixed_model(model: onnx.ModelProto, input_name: str, *, layout: str, input_type: int,
                   source: MaskSource) -> onnx.ModelProto:
    """``model`` fed by ``m ⊙ source_image + (1 − m) ⊙ source_baseline`` built from ``source``.

    ``source_image``/``source_baseline`` are canonical float32 [1, C, H, W]; the prefix converts
    to the model's ``layout`` and element type (``input_type``, a TensorProto type).

    Raises:
        FailedPrecondition: the model's opset is older than :data:`MIN_OPSET` (its conversion at load
            failed).
    """
    opset = default_opset(model)
    if opset < MIN_OPSET:
        raise FailedPrecondition(
            f"perturbation methods build their masks inside the graph with opset-{MIN_OPSET} ops, and this model is "
            f"opset {opset}: onnx.version_converter could not convert it at load (the model's 'opset' setting says "
            f"why); re-export it with opset >= {MIN_OPSET}")
    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    original = next(v for v in graph.input if v.name == input_name)
    dims = [d.dim_value if d.HasField("dim_value") else None for d in original.type.tensor_type.shape.dim]
    channels, height, width = (dims[1], dims[2], dims[3]) if layout == "NCHW" else (dims[3], dims[1], dims[2])
    p = PREFIX
    nodes = list(source.nodes) + [
        prefix_node("Sub", [SOURCE_IMAGE, SOURCE_BASELINE], p + "difference"),
        prefix_node("Mul", [MASK, p + "difference"], p + "masked_difference"),
        prefix_node("Add", [SOURCE_BASELINE, p + "masked_difference"], p + "blended"),
    ]
    blended = p + "blended"
    if layout == "NHWC":
        nodes.append(prefix_node("Transpose", [blended], p + "blended_nhwc", perm=[0, 2, 3, 1]))
        blended = p + "blended_nhwc"
    if input_type != TensorProto.FLOAT:
        nodes.append(prefix_node("Cast", [blended], p + "blended_cast", to=input_type))
        blended = p + "blended_cast"
    for node in GraphIndex(graph).consumers_of(input_name):
        for i, name in enumerate(node.input):
            if name == input_name:
                node.input[i] = blended
    for output in graph.output:
        if output.name == input_name:
            raise ValueError("the image input is also a graph output")
    kept = [node for node in graph.node]
    del graph.node[:]
    graph.node.extend(nodes + kept)
    graph.initializer.extend(source.initializers)
    inputs = [v for v in graph.input if v.name != input_name]
    del graph.input[:]
    image_shape = [1, channels, height, width]
    graph.input.extend(
        inputs
        + list(source.inputs)
        + [helper.make_tensor_value_info(SOURCE_IMAGE, TensorProto.FLOAT, image_shape),
           helper.make_tensor_value_info(SOURCE_BASELINE, TensorProto.FLOAT, image_shape)]
    )
    del graph.value_info[:]
    onnx.checker.check_model(result)
    return result
