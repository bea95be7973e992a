"""Model-parameter randomisation as an ONNX graph rewrite (Adebayo et al. 2018, "Sanity Checks for
Saliency Maps", NeurIPS, §3.1).

The *parametrised layers* of a graph are the nodes on the input → output path whose learned
parameters are float initializers:

==========================  ===========================================================
op                          tensors re-initialised
==========================  ===========================================================
Conv, ConvTranspose         W (input 1) and the bias B (input 2) when present
Gemm                        the constant operand of A/B and C (input 2) when present
MatMul                      the constant operand, plus the constant operand of an Add that
                            alone reads the product (the bias of an exported Linear)
BatchNormalization          the affine scale γ (input 1) and shift β (input 2); the running
                            mean and variance are statistics of the data, not parameters,
                            and are kept (so the layer still normalises)
LayerNormalization,         γ (input 1) and β (input 2)
InstanceNormalization
==========================  ===========================================================

Weights held in Constant nodes, or computed at run time, are not parameters here (exporters keep
learned weights in initializers). A tensor shared by several layers belongs to the first of them in
topological order.

**Re-initialisation.** Each tensor θ is replaced by a draw from N(mean(θ), std(θ)²) of its own
shape and dtype. The paper re-draws each layer's weights from a (truncated) normal initialiser;
matching each tensor's own statistics keeps the activations in the range the rest of the network
was trained on without knowing the framework's initialiser. (A constant tensor — a zero bias,
a γ of ones — keeps its value: its std is 0.) The generator of a tensor is seeded by
(``seed``, the tensor's name), so the same tensor gets the same values whichever other layers are
randomised with it: cascading step k + 1 is exactly step k plus one more layer.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from .index import GraphIndex

_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}


@dataclass(frozen=True)
class ParametrisedLayer:
    """One node with learned parameters: ``name`` (the node's name, else its first output),
    ``op_type`` and the initializer names ``tensors`` it owns (weight first)."""

    name: str
    op_type: str
    tensors: tuple[str, ...]


def parametrised_layers(model: onnx.ModelProto | GraphIndex, input_name: str, output_name: str
                        ) -> list[ParametrisedLayer]:
    """The parametrised layers (see the module docstring) between ``input_name`` and
    ``output_name``, in topological order (input first)."""
    index = GraphIndex.of(model)
    on_path = index.downstream([input_name]) & index.upstream([output_name])
    owned: set[str] = set()
    layers = []
    for node in index.nodes:
        if not node.output or node.output[0] not in on_path:
            continue
        tensors = [name for name in _parameter_inputs(node, index)
                   if name not in owned and _is_float_initializer(index, name)]
        if tensors:
            owned.update(tensors)
            layers.append(ParametrisedLayer(node.name or node.output[0], node.op_type, tuple(tensors)))
    return layers


def _parameter_inputs(node: onnx.NodeProto, index: GraphIndex) -> list[str]:
    inputs = list(node.input)
    if node.op_type in ("Conv", "ConvTranspose"):
        return inputs[1:3]
    if node.op_type == "Gemm":
        return inputs[:3]  # the data operand is not an initializer, so it drops out
    if node.op_type in ("BatchNormalization", "LayerNormalization", "InstanceNormalization"):
        return inputs[1:3]
    if node.op_type == "MatMul":
        readers = index.consumers_of(node.output[0])
        bias = readers[0].input if len(readers) == 1 and readers[0].op_type == "Add" else []
        return inputs + [name for name in bias if name != node.output[0]]
    return []


def _is_float_initializer(index: GraphIndex, name: str) -> bool:
    tensor = index.initializers.get(name)
    return tensor is not None and tensor.data_type in _FLOAT_TYPES


def randomised(model: onnx.ModelProto, layers: Iterable[ParametrisedLayer], *, seed: int) -> onnx.ModelProto:
    """A copy of ``model`` with every tensor of ``layers`` re-initialised (see the module docstring);
    all other initializers, and the graph's structure, are unchanged."""
    targets = {name for layer in layers for name in layer.tensors}
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for position, tensor in enumerate(copy.graph.initializer):
        if tensor.name in targets:
            fresh = numpy_helper.from_array(redrawn(numpy_helper.to_array(tensor), tensor.name, seed),
                                            tensor.name)
            copy.graph.initializer[position].CopyFrom(fresh)
    return copy


def redrawn(value: np.ndarray, name: str, seed: int) -> np.ndarray:
    """A draw from N(mean(value), std(value)²) shaped and typed like ``value``, from a generator
    seeded by (``seed``, crc32(``name``))."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    reference = value.astype(np.float64)
    fresh = rng.normal(reference.mean(), reference.std(), size=value.shape)
    return fresh.astype(value.dtype)


def spread(count: int, steps: int) -> list[int]:
    """``steps`` positions evenly spaced over ``range(count)``, first and last included (all of
    them when ``steps`` >= ``count``; one step: the last). Cascading step k randomises the top ``spread[k] + 1``
    layers (the first step the logits layer alone, the last the whole model); independent step k
    randomises layer ``spread[k]`` (top-down order) alone."""
    if steps >= count:
        return list(range(count))
    if steps == 1:
        return [count - 1]
    return sorted({int(round(k)) for k in np.linspace(0, count - 1, steps)})


def top_down(layers: Sequence[ParametrisedLayer]) -> list[ParametrisedLayer]:
    """``layers`` from the logits down (the order of the paper's cascade)."""
    return list(reversed(layers))
