"""A gradient graph with a baseline pass, fed one baseline x′ per request.

DeepLIFT's rules read the forward tensors at a baseline x′ as well as at x. The gradient builder
(:func:`explainers.autodiff.build_gradient_model` with ``baseline_pass=True``) adds that second
forward pass — the *twins* of the forward tensors, named ``<tensor>@baseline`` — reading an input
(``GradientModel.baseline_input``) shaped like the image batch. :func:`feed_baseline_once` adapts
the graph so the baseline is fed once per request instead of once per sample, and so the graph
reports score(x) − score(x′), the sum every DeepLIFT attribution must reach.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import onnx

if TYPE_CHECKING:  # autodiff imports graph/, never the reverse at run time
    from ..autodiff import GradientModel

BASELINE_IMAGE = "baseline_image"
"""Graph input of a baseline-pass gradient graph: the baseline x′ [1, model layout], fed once per request."""
SCORE_DELTA = "score_delta"
"""Output of a baseline-pass gradient graph: score(x) − score(x′) [n, classes] of the differentiated scores."""
_TWIN = "@baseline"
"""How the gradient builder names the baseline twin of a forward tensor (its suffix)."""


def _score_ancestors(graph: onnx.GraphProto, score: str) -> set[str]:
    """Every tensor the forward computation of ``score`` reads, ``score`` included."""
    producers = {name: node for node in graph.node for name in node.output if name}
    needed, stack = {score}, [score]
    while stack:
        node = producers.get(stack.pop())
        for name in node.input if node is not None else ():
            if name and name not in needed:
                needed.add(name)
                stack.append(name)
    return needed


def feed_baseline_once(built: GradientModel) -> GradientModel:
    """Adapt a baseline-pass gradient graph to one baseline per request.

    The builder's baseline input (``built.baseline_input``) is shaped like the image batch; here
    it becomes the in-graph ``Expand`` of a new input :data:`BASELINE_IMAGE` [1, ...] to the
    batch's shape (fed once, bound on the device for CUDA). Output :data:`SCORE_DELTA` =
    score(x) − score(x′): the baseline twins of the forward path to the score that dead-code
    elimination dropped (no rule read them) are recomputed, named as the builder names twins so
    that kept ones are reused.

    Args:
        built: a gradient graph built with ``baseline_pass=True`` (not modified).

    Returns:
        ``built`` with the adapted graph.

    Raises:
        ValueError: ``built`` has no baseline pass.
        onnx.checker.ValidationError: the adapted graph is invalid (a bug, not a user error).
    """
    twin_input = built.baseline_input
    if twin_input is None:
        raise ValueError("feed_baseline_once needs a gradient graph built with baseline_pass=True")
    model = onnx.ModelProto()
    model.CopyFrom(built.model)
    graph = model.graph
    for value in graph.input:
        if value.name == twin_input:
            value.name = BASELINE_IMAGE
            value.type.tensor_type.shape.dim[0].Clear()
            value.type.tensor_type.shape.dim[0].dim_value = 1
    shape = onnx.helper.make_node("Shape", [built.input_name], ["baseline/batch_shape"], name="baseline/shape")
    expand = onnx.helper.make_node("Expand", [BASELINE_IMAGE, "baseline/batch_shape"], [twin_input],
                                   name="baseline/expand")
    produced = {name for node in graph.node for name in node.output if name}
    needed = _score_ancestors(graph, built.score_tensor)
    twins, copies = {built.input_name: twin_input}, []
    for node in graph.node:
        if not any(name in needed for name in node.output) or not any(name in twins for name in node.input):
            continue
        outputs = [f"{name}{_TWIN}" if name in needed else "" for name in node.output]
        twins.update((name, twin) for name, twin in zip(node.output, outputs) if twin)
        if all(twin in produced for twin in outputs if twin):
            continue  # the builder kept this twin (a rule reads it)
        while outputs and not outputs[-1]:
            outputs.pop()
        copy = onnx.helper.make_node(node.op_type, [twins.get(name, name) for name in node.input], outputs,
                                     name=f"{node.name or node.output[0]}@baseline_score", domain=node.domain)
        copy.attribute.extend(node.attribute)
        copies.append(copy)
    delta = onnx.helper.make_node("Sub", [built.score_tensor, twins[built.score_tensor]], [SCORE_DELTA],
                                  name="baseline/score_delta")
    nodes = [shape, expand, *graph.node, *copies, delta]
    del graph.node[:]
    graph.node.extend(nodes)
    delta_info = graph.output.add()
    delta_info.CopyFrom(next(value for value in graph.output if value.name == built.score_output))
    delta_info.name = SCORE_DELTA  # shaped like the class scores
    onnx.checker.check_model(model)
    return replace(built, model=model)
