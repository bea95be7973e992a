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
