"""What a rule may ask and emit while the backward graph is built.

Rules never touch the graph directly: they read attributes, static shapes and dtypes, and emit
nodes and constants through :class:`VjpContext`. Constants take the dtype of the tensor they
combine with, so the same rule works for float16/32/64 graphs (the rule tests run in float64).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import Declined, node_label

Dim = int | str | None


class VjpContext:
    """Emission helpers plus read-only knowledge of the forward graph.

    Args:
        shapes: static shape per tensor name (``None`` entries for unknown dims), when known.
        dtypes: numpy dtype per tensor name, when known.
        opset: the default-domain opset of the model.
        default_dtype: dtype assumed for float tensors of unknown type.
    """

    def __init__(self, *, shapes: dict[str, tuple[Dim, ...]], dtypes: dict[str, np.dtype], opset: int,
                 default_dtype: np.dtype, constants: dict[str, np.ndarray], differentiable: set[str],
                 baselines: dict[str, str] | None = None, prefix: str = "grad"):
        self.shapes, self.dtypes, self.opset = shapes, dtypes, opset
        self._constants = constants
        self._differentiable = differentiable
        self._baselines = baselines
        self.default_dtype = default_dtype
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._prefix = prefix
        self._count = 0
        self._shape_cache: dict[str, str] = {}
        self._const_cache: dict[tuple, str] = {}
        self.approximations: list[str] = []

    # ------------------------------------------------------------------ names and nodes
    def fresh(self, hint: str = "t") -> str:
        self._count += 1
        return f"{self._prefix}/{hint}_{self._count}"

    def op(self, op_type: str, *inputs: str, domain: str = "", **attributes: Any) -> str:
        """Emit one node with one output; returns the output name. ``""`` skips an optional input."""
        return self.op_multi(op_type, list(inputs), 1, domain=domain, **attributes)[0]

    def op_multi(self, op_type: str, inputs: Sequence[str], outputs: int, *, domain: str = "",
                 **attributes: Any) -> list[str]:
        names = [self.fresh(op_type.lower()) for _ in range(outputs)]
        attrs = {k: v for k, v in attributes.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=names[0], domain=domain, **attrs))
        return names

    # ------------------------------------------------------------------ constants
    def const(self, value: Any, like: str | None = None, *, dtype: np.dtype | None = None) -> str:
        """A constant initializer with the dtype of tensor ``like`` (or ``dtype``)."""
        target = np.dtype(dtype) if dtype is not None else self.dtype(like) if like else self.default_dtype
        array = np.asarray(value, dtype=target)
        key = (target.str, array.shape, array.tobytes())
        name = self._const_cache.get(key)
        if name is None:
            name = self._const_cache[key] = self.fresh("const")
            self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def ints(self, values: Sequence[int] | int) -> str:
        """An int64 constant (axes, shapes, indices)."""
        return self.const(np.asarray(values, np.int64), dtype=np.int64)

    # ------------------------------------------------------------------ knowledge
    def wants(self, name: str) -> bool:
        """Whether a gradient for tensor ``name`` is useful (it depends on the input).

        Rules skip emitting gradients nobody wants (weights, biases, constants)."""
        return name in self._differentiable

    def dtype(self, name: str) -> np.dtype:
        return self.dtypes.get(name, self.default_dtype)

    def static_shape(self, name: str) -> tuple[Dim, ...] | None:
        """Dims as inferred: int when fixed, str for a symbolic dim, None when unknown."""
        return self.shapes.get(name)

    def baseline(self, name: str) -> str:
        """The twin of forward tensor ``name`` evaluated on the baseline x′ (DeepLIFT's reference input).

        Only available when the graph is built with ``baseline_pass=True``."""
        if self._baselines is None:
            raise Declined("this rule set needs a baseline pass (build with baseline_pass=True)")
        return self._baselines[name]

    def approximate(self, node: onnx.NodeProto, why: str) -> None:
        """Record that ``node``'s rule fell back to a rule that is only approximate here, and why
        (e.g. DeepLIFT's vanilla gradient where no rescale rule applies)."""
        self.approximations.append(f"{node_label(node)}: {why}")

    def rank(self, name: str) -> int | None:
        shape = self.static_shape(name)
        return None if shape is None else len(shape)

    def shape(self, name: str) -> str:
        """The run-time shape of ``name`` (a ``Shape`` node, emitted once per tensor)."""
        if name not in self._shape_cache:
            self._shape_cache[name] = self.op("Shape", name)
        return self._shape_cache[name]

    @staticmethod
    def attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
        for attribute in node.attribute:
            if attribute.name == name:
                return helper.get_attribute_value(attribute)
        return default

    def constant_value(self, name: str) -> np.ndarray | None:
        """The value of ``name`` when it is an initializer or a Constant node's output."""
        return self._constants.get(name)

    # ------------------------------------------------------------------ common gradient pieces
    def unbroadcast(self, grad: str, operand: str, result: str) -> str:
        """Sum ``grad`` (shaped like ``result``) back to the shape of a broadcast ``operand``."""
        operand_shape, result_shape = self.static_shape(operand), self.static_shape(result)
        if operand_shape is None or result_shape is None or len(result_shape) < len(operand_shape):
            return self._unbroadcast_dynamic(grad, operand)
        lead = len(result_shape) - len(operand_shape)
        # a symbolic operand dim is only safe when it is the same symbol in the result: another
        # symbol might be 1 at run time and need a reduction
        if any(not isinstance(d, int) and d != result_shape[lead + i] for i, d in enumerate(operand_shape)):
            return self._unbroadcast_dynamic(grad, operand)
        if tuple(operand_shape) == tuple(result_shape):
            return grad
        # reducing an axis whose operand dim is 1 is always right (a no-op when the result's is 1 too)
        axes = list(range(lead)) + [lead + i for i, dim in enumerate(operand_shape) if dim == 1]
        if not axes:
            return grad
        reduced = self.op("ReduceSum", grad, self.ints(axes), keepdims=1)
        return self.op("Reshape", reduced, self.shape(operand)) if lead else reduced

    def _unbroadcast_dynamic(self, grad: str, operand: str) -> str:
        """Pure-ONNX fallback: reduce over the axes where the operand (left-padded with 1s) is 1."""
        grad_shape, operand_shape = self.shape(grad), self.shape(operand)
        grad_rank = self.op("Size", grad_shape)
        operand_rank = self.op("Size", operand_shape)
        lead = self.op("Sub", grad_rank, operand_rank)
        ones = self.op("ConstantOfShape", self.op("Reshape", lead, self.ints([1])),
                       value=numpy_helper.from_array(np.ones(1, np.int64)))
        padded = self.op("Concat", ones, operand_shape, axis=0)
        is_one = self.op("Equal", padded, self.ints(1))
        differs = self.op("Not", self.op("Equal", padded, grad_shape))
        axes = self.op("Reshape", self.op("NonZero", self.op("And", is_one, differs)), self.ints([-1]))
        reduced = self.op("ReduceSum", grad, axes, keepdims=1, noop_with_empty_axes=1)
        return self.op("Reshape", reduced, operand_shape)
