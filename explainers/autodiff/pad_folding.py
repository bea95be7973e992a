"""Fold zero ``Pad`` nodes into the Conv nodes that read them, before differentiating.

Exports of TF-style "SAME" convolutions (EfficientNet-Lite, ``static_padding``) put an explicit
``Pad`` before each Conv. onnxruntime fuses the pair in the forward, but differentiated as written,
the Pad's gradient is a ``Slice`` of the Conv's data gradient: a full extra pass over each tensor,
which also takes it out of onnxruntime's blocked (NCHWc) layout. Conv(Pad(X, p), pads = q) equals
Conv(X, pads = p + q) exactly when the Pad is constant-mode with value 0 and pads only the spatial
axes, so the builder differentiates that Conv instead and the data gradient lands on X directly.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import onnx
from onnx import helper

from ..graph.index import GraphIndex


def _spatial_pads(node: onnx.NodeProto, index: GraphIndex) -> list[int] | None:
    """The Pad's amounts as [begin..., end...] over the spatial axes of a [N, C, ...] tensor, or None
    when it is not a zero, constant-mode Pad of the spatial axes with known non-negative amounts."""
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    mode = attributes.get("mode", b"constant")
    if (mode.decode() if isinstance(mode, bytes) else mode) != "constant" or len(node.input) > 3:
        return None  # opset 18's ``axes`` input: left as it is
    if len(node.input) > 1 and node.input[1]:
        amounts = index.folded_constants.get(node.input[1])
    else:
        amounts = attributes.get("pads")
    fill = index.folded_constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else 0
    fill = attributes.get("value", 0.0) if len(node.input) == 1 else fill
    if amounts is None or fill is None or np.any(np.asarray(fill) != 0):
        return None
    amounts = [int(a) for a in np.asarray(amounts).ravel()]
    rank = len(amounts) // 2
    begins, ends = amounts[:rank], amounts[rank:]
    if rank < 3 or any(a < 0 for a in amounts) or begins[:2] != [0, 0] or ends[:2] != [0, 0]:
        return None
    return begins[2:] + ends[2:]


def fold_pads_into_convs(model: onnx.ModelProto, index: GraphIndex, keep: Collection[str]) -> bool:
    """Rewrite ``model`` in place: every zero spatial Pad read only as the data input of Conv nodes
    with explicit pads (``auto_pad`` NOTSET) is removed and its amounts added to those Convs' pads.
    Tensors in ``keep`` (requested layers, graph outputs) are never removed. True if anything changed."""
    graph = model.graph
    outputs = {value.name for value in graph.output}
    folded = []
    for node in graph.node:
        if node.op_type != "Pad" or node.domain not in ("", "ai.onnx") or node.output[0] in keep:
            continue
        readers = index.consumers_of(node.output[0])
        if node.output[0] in outputs or not readers or not all(_pads_foldable(reader, node.output[0]) for reader in readers):
            continue
        amounts = _spatial_pads(node, index)
        if amounts is None:
            continue
        for reader in readers:
            _add_pads(reader, amounts)
            reader.input[0] = node.input[0]
        folded.append(node)
    for node in folded:
        graph.node.remove(node)
    return bool(folded)


def _pads_foldable(conv: onnx.NodeProto, name: str) -> bool:
    attributes = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    auto_pad = attributes.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    return (conv.op_type == "Conv" and conv.domain in ("", "ai.onnx") and conv.input[0] == name
            and name not in conv.input[1:] and auto_pad in ("NOTSET", ""))


def _add_pads(conv: onnx.NodeProto, amounts: list[int]) -> None:
    current = next((a for a in conv.attribute if a.name == "pads"), None)
    old = list(current.ints) if current is not None else [0] * len(amounts)
    if current is not None:
        conv.attribute.remove(current)
    conv.attribute.append(helper.make_attribute("pads", [a + b for a, b in zip(old, amounts)]))
