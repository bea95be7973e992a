"""Read what a classifier expects and emits from its graph alone (no onnxruntime here).

Detection rules, each overridable in :class:`~explainers.model.config.ModelConfig`:

* the image input is the single graph input (not an initializer) of rank 4; any other input needs
  a default (an initializer of its name, which onnxruntime then uses), else the model is refused
  with a message naming it;
* layout NHWC when the channel-sized dimension (1, 3 or 4) is last and not second, or when the
  input feeds straight into a ``Transpose`` with ``perm=[0, 3, 1, 2]`` (tf2onnx's pattern);
* the class-score output is the single float output of rank 2; with several, one whose name
  mentions logits, then probabilities, then the first;
* outputs are probabilities when that output is produced by Softmax or Sigmoid (the caller also
  probes: rows that are non-negative and sum to 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from ..errors import InvalidModel, listing

FLOAT_TYPES = {onnx.TensorProto.FLOAT: "FP32", onnx.TensorProto.FLOAT16: "FP16", onnx.TensorProto.DOUBLE: "FP64"}
INPUT_TYPES = {**FLOAT_TYPES, onnx.TensorProto.UINT8: "UINT8"}
_CHANNEL_SIZES = (1, 3, 4)


@dataclass(frozen=True)
class Signature:
    """The parts of a graph's interface an explainer needs.

    ``input_shape`` is in the model's own layout and ``output_shape`` is the class-score output's
    declared shape, both with ``None`` for symbolic dimensions.
    """

    input_name: str
    input_shape: tuple[int | None, ...]
    input_datatype: str
    layout: str
    output_name: str
    output_index: int
    output_producer: str | None
    output_shape: tuple[int | None, ...] = ()


def _dims(value: onnx.ValueInfoProto) -> tuple[int | None, ...]:
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim)


def graph_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    initializers = {init.name for init in graph.initializer}
    return [value for value in graph.input if value.name not in initializers]


def detect_layout(graph: onnx.GraphProto, input_name: str, shape: tuple[int | None, ...]) -> str:
    for node in graph.node:
        if input_name in node.input and node.op_type == "Transpose":
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            if perm == [0, 3, 1, 2]:
                return "NHWC"
    second, last = shape[1], shape[3]
    if last in _CHANNEL_SIZES and second not in _CHANNEL_SIZES:
        return "NHWC"
    return "NCHW"


def read_signature(model: onnx.ModelProto, *, layout: str | None = None, output: str | None = None) -> Signature:
    """Find the image input and the class-score output; raise :class:`InvalidModel` when absent."""
    graph = model.graph
    inputs = graph_inputs(graph)
    if len(inputs) != 1:
        raise InvalidModel(_not_one_input(inputs))
    value = inputs[0]
    elem_type = value.type.tensor_type.elem_type
    if elem_type not in INPUT_TYPES:
        raise InvalidModel(
            f"input {value.name!r} has element type {onnx.TensorProto.DataType.Name(elem_type)}; "
            f"allowed: {', '.join(INPUT_TYPES.values())}"
        )
    shape = _dims(value)
    if len(shape) != 4:
        raise InvalidModel(
            f"input {value.name!r} has rank {len(shape)}; an image classifier takes a rank-4 tensor "
            "(NCHW or NHWC)"
        )
    chosen_layout = layout or detect_layout(graph, value.name, shape)

    candidates = [
        (i, out)
        for i, out in enumerate(graph.output)
        if out.type.tensor_type.elem_type in FLOAT_TYPES and len(out.type.tensor_type.shape.dim) == 2
    ]
    if output is not None:
        named = [(i, out) for i, out in enumerate(graph.output) if out.name == output]
        if not named:
            raise InvalidModel(
                f"config names output {output!r}, but the outputs are: {', '.join(o.name for o in graph.output)}",
                field="config.output",
            )
        candidates = named
    if not candidates:
        names = ", ".join(o.name for o in graph.output)
        maps = [o.name for o in graph.output if o.type.HasField("sequence_type") or o.type.HasField("map_type")]
        hint = (f"; {', '.join(maps)} is a sequence or a map, not a tensor (skl2onnx's ZipMap writes one: convert "
                "with options={'zipmap': False})" if maps else "")
        raise InvalidModel(f"no float output of shape [batch, classes] among the outputs ({names}){hint}")
    index, chosen = _prefer(candidates)
    producer = next((node.op_type for node in graph.node if chosen.name in node.output), None)
    return Signature(
        input_name=value.name,
        input_shape=shape,
        input_datatype=INPUT_TYPES[elem_type],
        layout=chosen_layout,
        output_name=chosen.name,
        output_index=index,
        output_producer=producer,
        output_shape=_dims(chosen),
    )


def _prefer(candidates: list[tuple[int, onnx.ValueInfoProto]]) -> tuple[int, onnx.ValueInfoProto]:
    for keyword in ("logit", "prob", "score"):
        for index, out in candidates:
            if keyword in out.name.lower():
                return index, out
    return candidates[0]


def _not_one_input(inputs: list[onnx.ValueInfoProto]) -> str:
    """Why a graph with other than one data input is refused, naming the inputs without a default."""
    if not inputs:
        return "expected exactly one input (the image), found none"
    images = [v for v in inputs if len(_dims(v)) == 4]
    if len(images) != 1:
        return f"expected exactly one input (the image), found {len(inputs)}: {listing([v.name for v in inputs])}"
    others = [v.name for v in inputs if v is not images[0]]
    return (f"the model has inputs besides the image {images[0].name!r} without a default value: "
            f"{listing(others)}; onnxplain feeds only the image, so give each of them a constant default (an "
            "initializer of the same name, e.g. graph.initializer.append(onnx.numpy_helper.from_array(value, name))) "
            "or remove what reads it")
