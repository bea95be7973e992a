"""One index of an ONNX graph: who produces and who consumes each tensor, its constants, its opset,
and the walks every graph pass needs (what depends on a tensor, what a tensor depends on).

Graph passes (the gradient builder, layer discovery, CAM head and bias-layer analysis, dynamic
batch, dead-code elimination) ask a :class:`GraphIndex` instead of rebuilding these maps.

Why an explicit object and not a cache keyed by the model: protobuf messages (upb) can be neither
hashed nor weakly referenced, so a cache keyed by ``id(model)`` would either keep every model alive
or answer for a recycled id, and graph passes mutate their copies (which would leave a cached index
stale). The owner of a model builds one index next to it and passes it on; every function here
that takes a model also accepts that index (:meth:`GraphIndex.of`). An index describes the graph as
it was when built: rebuild it after editing the graph.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cached_property

import numpy as np
import onnx
from onnx import helper, numpy_helper

FOLD_LIMIT = 1 << 20
"""Elements: fold shape arithmetic and small tensors at build time, not whole weight tensors."""


class GraphIndex:
    """Read-only maps of one graph, computed once (lazily where costly).

    Args:
        model: the model (or just its graph, with ``opset`` given).
        opset: the default-domain opset (read from ``model`` when omitted).
    """

    def __init__(self, model: onnx.ModelProto | onnx.GraphProto, opset: int | None = None):
        if isinstance(model, onnx.ModelProto):
            self.graph = model.graph
            self.opset = opset if opset is not None else default_opset(model)
        else:
            self.graph, self.opset = model, opset or 0
        self.nodes: list[onnx.NodeProto] = list(self.graph.node)  # topological order (ONNX requires it)
        self.producers: dict[str, onnx.NodeProto] = {
            name: node for node in self.nodes for name in node.output if name}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.nodes:
            for name in dict.fromkeys(node.input):
                if name:
                    self.consumers.setdefault(name, []).append(node)
        self.initializers: dict[str, onnx.TensorProto] = {init.name: init for init in self.graph.initializer}
        self.inputs: list[str] = [v.name for v in self.graph.input if v.name not in self.initializers]
        """Graph inputs that are not initializers (the data inputs)."""
        self._constant_nodes = {node.output[0]: node for node in self.nodes
                                if node.op_type == "Constant" and node.attribute}
        self._constants: dict[str, np.ndarray] = {}

    @classmethod
    def of(cls, model: onnx.ModelProto | onnx.GraphProto | GraphIndex) -> GraphIndex:
        """``model``'s index: the one given, or a new one."""
        return model if isinstance(model, GraphIndex) else cls(model)

    # ------------------------------------------------------------------ single tensors
    def producer(self, name: str) -> onnx.NodeProto | None:
        """The node computing ``name``; None for graph inputs, initializers and unknown names."""
        return self.producers.get(name)

    def consumers_of(self, name: str) -> list[onnx.NodeProto]:
        """The nodes reading ``name`` (each once), in topological order."""
        return self.consumers.get(name, [])

    def constant(self, name: str) -> np.ndarray | None:
        """The value of an initializer or of a Constant node's output (converted once); else None."""
        if name in self._constants:
            return self._constants[name]
        if name in self.initializers:
            value = numpy_helper.to_array(self.initializers[name])
        elif name in self._constant_nodes:
            value = _constant_node_value(self._constant_nodes[name])
        else:
            return None
        self._constants[name] = value
        return value

    def constant_node(self, name: str) -> onnx.NodeProto | None:
        """The Constant node producing ``name``, if one does."""
        return self._constant_nodes.get(name)

    @cached_property
    def folded_constants(self) -> Mapping[str, np.ndarray]:
        """Values known before run time: initializers, Constant nodes, and every node computed only
        from those, evaluated with ``onnx.reference`` (exporters build Pad amounts, Reshape targets
        and Resize sizes from constants). Results over :data:`FOLD_LIMIT` elements are left to run
        time, as is any node the reference evaluator cannot run. Initializers are converted when
        first read (a VGG's 530 MB of weights are mostly never read)."""
        values = _InitializersFirst(self)
        for node in self.nodes:
            if node.op_type == "Constant" and node.attribute:
                value = self.constant(node.output[0])
                if value is not None:
                    values[node.output[0]] = value
            elif node.input and all(name == "" or name in values for name in node.input) and _foldable(node):
                try:
                    results = _evaluate(node, [values[name] if name else None for name in node.input], self.opset)
                except Exception:  # folding is an optimisation; leave the node to run time
                    continue
                for name, value in zip(node.output, results):
                    if name and value is not None and np.size(value) <= FOLD_LIMIT:
                        values[name] = np.asarray(value)
        return values

    # ------------------------------------------------------------------ walks
    def downstream(self, sources: Iterable[str],
                   follow: Callable[[onnx.NodeProto, str], bool] | None = None) -> set[str]:
        """``sources`` and every tensor computed from them (one pass in topological order).

        ``follow(node, output)`` decides whether an output of a reached node is itself reached
        (e.g. only float tensors carry a gradient); by default all are."""
        reached = set(sources)
        for node in self.nodes:
            if any(name in reached for name in node.input):
                reached.update(out for out in node.output if out and (follow is None or follow(node, out)))
        return reached

    def upstream(self, targets: Iterable[str]) -> set[str]:
        """``targets`` and every tensor they depend on; a node with subgraphs (If/Loop) depends
        on the outer-scope names its subgraphs read as well."""
        needed = set(targets)
        stack = list(needed)
        while stack:
            node = self.producers.get(stack.pop())
            if node is None:
                continue
            for name in [*node.input, *captured_names(node)]:
                if name and name not in needed:
                    needed.add(name)
                    stack.append(name)
        return needed

    def nodes_producing(self, names: set[str]) -> list[onnx.NodeProto]:
        """The nodes with an output in ``names``, in topological order."""
        return [node for node in self.nodes if any(name in names for name in node.output)]


def default_opset(model: onnx.ModelProto) -> int:
    """The default-domain ("" or "ai.onnx") opset of ``model``; 0 when absent."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def captured_names(node: onnx.NodeProto) -> set[str]:
    """Names read inside ``node``'s subgraphs (If/Loop/Scan bodies), recursively."""
    names: set[str] = set()
    for attribute in node.attribute:
        subgraphs = list(attribute.graphs) + ([attribute.g] if attribute.HasField("g") else [])
        for sub in subgraphs:
            for inner in sub.node:
                names.update(name for name in inner.input if name)
                names.update(captured_names(inner))
    return names


def _constant_node_value(node: onnx.NodeProto) -> np.ndarray | None:
    attribute = node.attribute[0]
    if attribute.name == "value":
        return numpy_helper.to_array(attribute.t)
    if attribute.name in ("value_float", "value_int", "value_floats", "value_ints"):
        return np.asarray(helper.get_attribute_value(attribute))
    return None


class _InitializersFirst(Mapping):
    """``index``'s initializers (converted on first read, through :meth:`GraphIndex.constant`) and
    the values set on it."""

    def __init__(self, index: GraphIndex):
        self._index = index
        self._set: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self._set:
            return self._set[name]
        if name in self._index.initializers:
            return self._index.constant(name)
        raise KeyError(name)

    def __setitem__(self, name: str, value: np.ndarray) -> None:
        self._set[name] = value

    def __contains__(self, name: object) -> bool:
        return name in self._set or name in self._index.initializers

    def __iter__(self) -> Iterator[str]:
        yield from self._index.initializers
        yield from (name for name in self._set if name not in self._index.initializers)

    def __len__(self) -> int:
        return len(self._index.initializers) + sum(name not in self._index.initializers for name in self._set)


def _foldable(node: onnx.NodeProto) -> bool:
    return node.domain in ("", "ai.onnx") and not any(
        a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)


def _evaluate(node: onnx.NodeProto, inputs: list, opset: int) -> list:
    from onnx.reference import ReferenceEvaluator

    names = [f"in{i}" if value is not None else "" for i, value in enumerate(inputs)]
    single = helper.make_node(node.op_type, names, [f"out{i}" for i in range(len(node.output))], domain=node.domain)
    single.attribute.extend(node.attribute)
    evaluator = ReferenceEvaluator(single, opsets={"": opset})
    return evaluator.run(None, {name: value for name, value in zip(names, inputs) if name})
