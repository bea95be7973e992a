"""Dead-code elimination: keep only the nodes and initializers the requested outputs need.

onnxruntime does not prune unused nodes itself; without this, a gradient graph would also compute
weight gradients and forward branches nobody asked for.
"""

from __future__ import annotations

from collections.abc import Iterable

import onnx

from .index import GraphIndex


def eliminate_dead_code(graph: onnx.GraphProto, keep_outputs: Iterable[str]) -> None:
    """Remove, in place, every node and initializer not needed for ``keep_outputs``.

    Graph outputs not in ``keep_outputs`` are dropped too. Nodes with subgraphs (If/Loop) are kept
    whole when needed; their captured outer-scope names count as their inputs.
    """
    wanted = set(keep_outputs)
    outputs = [o for o in graph.output if o.name in wanted]
    del graph.output[:]
    graph.output.extend(outputs)

    needed = GraphIndex(graph).upstream(wanted)
    kept = [node for node in graph.node if any(name in needed for name in node.output)]
    del graph.node[:]
    graph.node.extend(kept)

    for index in reversed(range(len(graph.initializer))):  # in place: re-adding would copy every weight
        if graph.initializer[index].name not in needed:
            del graph.initializer[index]
    value_info = [v for v in graph.value_info if v.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(value_info)

