"""Graph passes that make what other exporters write look like a plain classifier, before loading.

* :func:`upgraded_opset` — opset 7–9 exports (older tf2onnx, caffe2onnx) converted with
  ``onnx.version_converter``, so that the nodes onnxplain adds (perturbation prefixes, gradient
  graphs) can be in one modern form: ``Slice`` with inputs, ``Resize`` for ``Upsample``, axes as
  inputs. Converting once at load, and not emitting each opset's own form in every prefix and rule,
  keeps one form of every emitted node, and the gradient builder already works at that opset;
  :mod:`explainers.model.classifier` checks that the converted model computes what the original does.
* :func:`without_zipmap` — skl2onnx's default ``ZipMap`` output (a sequence of {class: probability}
  maps) read as the probabilities [N, classes] it is built from.
* :func:`without_unread_inputs` — inputs no node reads (a ``training`` flag left over by the
  exporter) dropped; inputs with an initializer are already constants that onnxruntime fills in.
* :func:`final_activation_last` — a final Sigmoid followed by ops that only reshape (Flatten, Identity,
  ...) moved after them, and an Identity after a final Softmax dropped, so that the output's producer is
  the activation: every reader of it (the output kind, the gradient builder's cut to the logits, the
  cross-entropy checks) then sees the model's probabilities as such.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from .index import GraphIndex, captured_names, default_opset

ZIPMAP_DOMAIN = "ai.onnx.ml"


def upgraded_opset(model: onnx.ModelProto, target: int) -> onnx.ModelProto | None:
    """``model`` converted to opset ``target`` when its default-domain opset is older, else None.

    Raises:
        ValueError: the converter has no adapter for one of its ops, or produced an invalid graph
            (the message is onnx's).
    """
    if default_opset(model) >= target:
        return None
    try:
        converted = onnx.version_converter.convert_version(model, target)
        onnx.checker.check_model(converted)
    except Exception as exc:  # the converter raises RuntimeError, checker errors and more
        raise ValueError(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__) from exc
    return converted


def without_zipmap(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """``model`` with every ``ZipMap`` output replaced by the probabilities [N, classes] it zips, under
    the output's name (the zipped tensor is renamed, so the output's producer stays the Softmax that
    gradient graphs cut), or dropped when the probabilities are an output too; None when it has none."""
    outputs = {value.name for value in model.graph.output}
    if not any(node.op_type == "ZipMap" and node.domain == ZIPMAP_DOMAIN and node.output[0] in outputs
               for node in model.graph.node):
        return None
    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    for zipmap in [node for node in graph.node if node.op_type == "ZipMap" and node.output[0] in outputs]:
        zipped, name = zipmap.input[0], zipmap.output[0]
        graph.node.remove(zipmap)
        if zipped in outputs:  # the probabilities are an output already: drop the zipped copy
            graph.output.remove(next(value for value in graph.output if value.name == name))
            continue
        for node in graph.node:
            node.input[:] = [name if value == zipped else value for value in node.input]
            node.output[:] = [name if value == zipped else value for value in node.output]
        output = next(value for value in graph.output if value.name == name)
        output.CopyFrom(helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, None]))
    return result


def without_unread_inputs(model: onnx.ModelProto) -> tuple[onnx.ModelProto | None, list[str]]:
    """``model`` without the data inputs (not initializers) that no node reads, and their names;
    (None, []) when every input is read."""
    index = GraphIndex(model)
    read = {name for node in index.nodes for name in [*node.input, *captured_names(node)]}
    outputs = {value.name for value in model.graph.output}
    unread = [name for name in index.inputs if name not in read and name not in outputs]
    if not unread or len(unread) == len(index.inputs):
        return None, []
    result = onnx.ModelProto()
    result.CopyFrom(model)
    kept = [value for value in result.graph.input if value.name not in unread]
    del result.graph.input[:]
    result.graph.input.extend(kept)
    return result, unread


_RESHAPING = frozenset({"Identity", "Flatten", "Reshape", "Squeeze", "Unsqueeze"})
"""Ops whose output holds their first input's values, only (re)shaped: an elementwise op commutes with them."""


def final_activation_last(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """``model`` with a final activation behind reshaping ops moved to the end, or None when no output has one.

    For an output ``y`` made by a chain of single-use :data:`_RESHAPING` nodes from a single-use Sigmoid (any
    chain: it is elementwise) or Softmax (Identity chains only: a reshape changes its axis): the chain reads
    the activation's input instead, and the activation reads the chain's result and writes ``y``. The values
    of ``y`` are unchanged."""
    index = GraphIndex(model)
    outputs = {value.name for value in model.graph.output}
    moves = []
    for name in outputs:
        chain = []
        node = index.producer(name)
        while (node is not None and node.op_type in _RESHAPING and node.domain in ("", "ai.onnx")
               and len(index.consumers_of(node.input[0])) == 1 and node.input[0] not in outputs):
            chain.append(node)
            node = index.producer(node.input[0])
        if (not chain or node is None or node.domain not in ("", "ai.onnx")
                or not (node.op_type == "Sigmoid"
                        or node.op_type == "Softmax" and all(link.op_type == "Identity" for link in chain))):
            continue
        moves.append((node.output[0], name))
    if not moves:
        return None
    result = onnx.ModelProto()
    result.CopyFrom(model)
    nodes = list(result.graph.node)
    for activated, output in moves:
        by_output = {out: n for n in nodes for out in n.output}
        activation = by_output[activated]
        first = next(n for n in nodes if activated in n.input)
        last = by_output[output]
        first.input[0] = activation.input[0]
        last.output[0] = f"{output}_before_{activation.op_type.lower()}"
        activation.input[0] = last.output[0]
        activation.output[0] = output
        nodes.remove(activation)
        nodes.insert(nodes.index(last) + 1, activation)
    del result.graph.node[:]
    result.graph.node.extend(nodes)
    return result
