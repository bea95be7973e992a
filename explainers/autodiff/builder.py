"""Build a gradient model from any ONNX classifier: reverse-mode autodiff emitting standard ONNX.

The result takes the original image input plus ``class_weights`` [batch, classes] and outputs,
besides the class scores, ``d score / d input`` where ``score = Σ_c scores[:, c] · class_weights``,
and for each requested layer its activation and ``d score / d layer``. Only standard ONNX ops
are emitted, so it runs on stock onnxruntime (CPU or CUDA). Steps (see AUTODIFF.md):

1. normalise: opset ≥ 16 (ScatterElements with reduction), shape and type inference;
2. cut: by default the score is taken before a final Softmax/Sigmoid (the logits);
3. seed the backward pass from ``class_weights`` (or, for a log-softmax score, from
   ``class_weights − (Σ class_weights) · softmax(scores)``, computed in the graph);
4. visit, in reverse topological order, only the nodes on a path input → score, calling each
   op's vector-Jacobian rule; fan-out is summed;
5. dead-code elimination from the requested outputs; ``onnx.checker``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from ..errors import InvalidArgument
from ..graph.dce import eliminate_dead_code
from ..graph.index import GraphIndex, default_opset
from ..graph.skeleton import check_structure, skeleton
from .context import VjpContext
from .errors import Declined, GradientError, declined_error
from .pad_folding import fold_pads_into_convs
from .registry import Rule
from .rule_sets import rule_set, supported_ops

CLASS_WEIGHTS = "class_weights"
INPUT_GRAD = "input_grad"
BASELINE_INPUT = "baseline_input"
MIN_OPSET = 16
FINAL_ACTIVATIONS = ("Softmax", "Sigmoid")
"""Final activations a gradient graph can cut off (it then differentiates their input, the logits)."""
_NON_FLOAT_OPS = {
    "Shape", "Size", "NonZero", "ArgMax", "ArgMin", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual",
    "Not", "And", "Or", "Xor", "IsNaN", "IsInf", "Range",
}
_FLOAT_TYPES = {
    onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16, onnx.TensorProto.DOUBLE: np.float64,
}


@dataclass(frozen=True)
class GradientModel:
    """The gradient model and the names of its extra inputs and outputs.

    ``layers`` maps each requested layer to (activation output, gradient output); ``input_grad`` is
    None when the input gradient was not requested (``input_gradient=False``);
    ``approximations`` lists the nodes where a rule set fell back to a rule that is only
    approximate there, with the reason (e.g. DeepLIFT's vanilla gradient through Max).
    """

    model: onnx.ModelProto
    input_name: str
    score_output: str
    score_tensor: str
    input_grad: str | None
    layers: dict[str, tuple[str, str]]
    baseline_input: str | None = None
    approximations: tuple[str, ...] = ()


def build_gradient_model(
    model: onnx.ModelProto,
    *,
    input_name: str | None = None,
    output_name: str | None = None,
    layers: Sequence[str] = (),
    rules: str | Mapping[str, Rule] = "vanilla",
    cut_final_activation: bool = True,
    input_shape: Sequence[int | None] | None = None,
    shape_hints: Mapping[str, tuple] | None = None,
    baseline_pass: bool = False,
    score_seed: str = "linear",
    input_gradient: bool = True,
) -> GradientModel:
    """Differentiate ``model``'s class scores with respect to its input and ``layers``.

    Args:
        model: any ONNX classifier (not modified).
        input_name: the image input (default: the only graph input that is not an initializer).
        output_name: the class-score output (default: the first graph output).
        layers: names of intermediate tensors whose activations and gradients are wanted.
        rules: a rule-set name ("vanilla", "guided_backprop", "deconvnet") or a rule mapping.
        cut_final_activation: differentiate the logits feeding a final Softmax/Sigmoid
            (the default, as Grad-CAM and Captum do) rather than the probabilities.
        input_shape: known input dims (``None`` = keep the graph's), so that shape inference
            gives rules static spatial sizes when the graph declares them symbolic.
        shape_hints: shapes known from elsewhere (e.g. probed by running the model), used where
            static inference leaves a dimension unknown or symbolic.
        baseline_pass: also evaluate the forward graph on a second input ``baseline_input``
            (a baseline x′) so that rules can read ``ctx.baseline(tensor)``, e.g. DeepLIFT's
            rescale rule (f(x) − f(x′)) / (x − x′).
        score_seed: what is differentiated, from the scores ``z`` (the logits when the final
            activation is cut) and ``w`` = ``class_weights``, with its seed computed in the graph from
            the forward pass (no second forward to read ``z`` first):
            ``"linear"``: ``Σ_c w_c z_c`` (seed ``w``);
            ``"softmax"``: ``Σ_c w_c softmax(z)_c`` (seed ``s ⊙ (w − (s·w))``, s = softmax(z)) — an
            objective on probabilities of a model that outputs logits;
            ``"log_softmax"``: ``Σ_c w_c · log softmax(z)_c`` (seed ``w − (Σ_c w_c) · s``); with
            ``w = −e_Q`` the gradient of the cross-entropy towards class Q, ``s − e_Q``
            (Prabhushankar et al. 2020).
        input_gradient: also output ``d score / d input``. Without it (layer gradients only, as
            Grad-CAM needs) the backward sweep stops at the ``layers``: only the nodes downstream
            of a layer are differentiated, so the backward costs the head's share of the graph.

    Raises:
        GradientError: an op on the path has no rule (names the op, the node and the supported ops),
            or its rule declined (names the op, the node and the reason).
        InvalidArgument: an unknown input, output or layer name; ``input_gradient=False`` without
            layers, or with a baseline pass (its rules are for input attributions).
    """
    if not input_gradient and (not layers or baseline_pass):
        raise InvalidArgument("layers", "a graph without the input gradient needs layers and no baseline pass")
    table = rule_set(rules) if isinstance(rules, str) else rules
    model = _normalise(model)
    graph = model.graph
    index = GraphIndex(model)
    input_name = input_name or index.inputs[0]
    if input_shape is not None:
        _pin_input_shape(graph, input_name, input_shape)
    output_name = output_name or graph.output[0].name
    all_tensors = set(index.producers) | set(index.inputs)
    for kind, name in [("input", input_name), ("output", output_name)] + [("layer", n) for n in layers]:
        if name not in all_tensors:
            field = {"input": "input", "output": "output", "layer": "params.layer"}[kind]
            raise InvalidArgument(field, f"no tensor named {name!r} in the graph")

    if fold_pads_into_convs(model, index, keep={input_name, output_name, *layers}):
        index = GraphIndex(model)
    score_tensor = output_name
    producer = index.producer(score_tensor)
    if cut_final_activation and producer is not None and producer.op_type in FINAL_ACTIVATIONS:
        score_tensor = producer.input[0]

    shapes, dtypes = _value_infos(model)
    for name, hinted in (shape_hints or {}).items():
        inferred = shapes.get(name)
        if inferred is None or len(inferred) != len(hinted):
            shapes[name] = tuple(hinted)
        else:
            shapes[name] = tuple(d if isinstance(d, int) else h for d, h in zip(inferred, hinted))
    differentiable = index.downstream([input_name], lambda node, name: _is_float(name, node, dtypes))
    for layer in layers:
        if layer not in differentiable:
            raise InvalidArgument("params.layer", f"tensor {layer!r} does not depend on the input {input_name!r}")
    needed = index.upstream([score_tensor])
    if score_tensor not in differentiable:
        raise GradientError(f"the score {score_tensor!r} does not depend on the input {input_name!r}")
    if not input_gradient:  # d score / d layer: everything upstream of the layers is held fixed
        differentiable = index.downstream(list(layers), lambda node, name: _is_float(name, node, dtypes))

    input_dtype = dtypes.get(input_name, np.dtype(np.float32))
    baselines = _baseline_pass(graph, input_name, differentiable) if baseline_pass else None
    ctx = VjpContext(shapes=shapes, dtypes=dtypes, opset=index.opset, default_dtype=input_dtype,
                     constants=index.folded_constants, differentiable=differentiable, baselines=baselines)
    ctx.dtypes[CLASS_WEIGHTS] = ctx.dtype(score_tensor)
    if score_seed not in _SCORE_SEEDS:
        raise ValueError(f"score_seed {score_seed!r}: allowed {sorted(_SCORE_SEEDS)}")
    seed = _SCORE_SEEDS[score_seed](ctx, score_tensor)
    pending: dict[str, list[str]] = {score_tensor: [seed]}

    def gradient_of(name: str) -> str | None:
        parts = pending.get(name)
        if not parts:
            return None
        if len(parts) > 1:
            pending[name] = [ctx.op("Sum", *parts)]
            ctx.dtypes[pending[name][0]] = ctx.dtype(name)
        return pending[name][0]

    path = [n for n in index.nodes_producing(needed) if any(i in differentiable for i in n.input)]
    for node in reversed(path):
        output_grads = [gradient_of(o) for o in node.output]
        if all(g is None for g in output_grads):
            continue
        rule = table.get(node.op_type)
        if rule is None or node.domain not in ("", "ai.onnx"):
            label = f"{node.domain}.{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type
            raise GradientError(
                f"no gradient rule for op {label} (node {node.name or node.output[0]!r}); "
                f"supported: {', '.join(supported_ops())}"
            )
        try:
            input_grads = rule(ctx, node, output_grads)
        except Declined as declined:
            raise declined_error(node, declined) from None
        for name, grad in zip(node.input, input_grads):
            if grad is not None and name in differentiable:
                ctx.dtypes.setdefault(grad, ctx.dtype(name))  # a gradient has its tensor's dtype
                pending.setdefault(name, []).append(grad)

    extra_outputs = []  # (output name, tensor, forward tensor alike)
    if input_gradient:
        input_grad = gradient_of(input_name)
        if input_grad is None:
            raise GradientError(f"no gradient reaches the input {input_name!r}")
        extra_outputs.append((INPUT_GRAD, input_grad, input_name))
    layer_outputs: dict[str, tuple[str, str]] = {}
    for index, layer in enumerate(layers):
        grad = gradient_of(layer)
        if grad is None:
            raise InvalidArgument("params.layer", f"the score does not depend on layer {layer!r}")
        layer_outputs[layer] = (f"layer_{index}", f"layer_{index}_grad")
        extra_outputs += [(f"layer_{index}", layer, layer), (f"layer_{index}_grad", grad, layer)]
    built = _assemble(model, ctx, input_name, output_name, score_tensor, extra_outputs, layer_outputs,
                      baseline_pass)
    _annotate_gradient_shapes(built.model.graph, ctx, pending, batch=(ctx.static_shape(input_name) or [None])[0])
    return built


def _annotate_gradient_shapes(graph: onnx.GraphProto, ctx: VjpContext, pending: dict[str, list[str]], *,
                              batch: object) -> None:
    """Declare each gradient tensor's shape (its forward tensor's, symbolic batch dimension included)
    as value_info. onnxruntime's own inference loses the symbolic batch on the backward path (it
    passes through Reshape/Expand with computed shapes), and without it its NCHWc transformer cannot
    prove g and a forward tensor of the same shape, so every elementwise product of the two ran in
    the plain layout between two reorders.

    Only for the [batch, C, H, W] outputs of Conv and the elementwise ops after it (``_convolved``),
    whose leading dimension is the input's ``batch``: elsewhere (attention windows) a dimension that
    inference calls ``batch`` may be a multiple of it at run time.
    """
    convolved = _convolved(graph)
    produced = {name for node in graph.node for name in node.output}
    declared = {value.name for value in list(graph.input) + list(graph.output)}
    for forward, parts in pending.items():
        shape = ctx.static_shape(forward)
        if forward not in convolved or shape is None or len(shape) != 4 or shape[0] != batch \
                or not all(isinstance(d, int) for d in shape[1:]):
            continue
        elem = helper.np_dtype_to_tensor_dtype(ctx.dtype(forward))
        for part in dict.fromkeys(parts):
            if part in produced and part not in declared:
                graph.value_info.append(helper.make_tensor_value_info(part, elem, list(shape)))
                declared.add(part)


_CONVOLVED_OPS = frozenset({"Conv", "Clip", "Relu", "Add", "Sum", "Mul", "BatchNormalization", "Pad"})


def _convolved(graph: onnx.GraphProto) -> set[str]:
    """Outputs of Conv nodes and of the Conv-family ops (activations, residual Add, Pad) fed by them."""
    found: set[str] = set()
    for node in graph.node:  # topological
        if node.op_type == "Conv" or (node.op_type in _CONVOLVED_OPS and any(i in found for i in node.input)):
            found.update(node.output)
    return found


def _log_softmax_seed(ctx: VjpContext, scores: str) -> str:
    """``w − (Σ_c w_c) · softmax(z)`` [batch, classes] for ``w`` = class_weights and ``z`` = ``scores``:
    the vector-Jacobian product of ``w · log softmax(z)`` (the LogSoftmax rule, seeded with w)."""
    probabilities = ctx.op("Softmax", scores, axis=-1)
    total = ctx.op("ReduceSum", CLASS_WEIGHTS, ctx.ints([-1]), keepdims=1)
    seed = ctx.op("Sub", CLASS_WEIGHTS, ctx.op("Mul", probabilities, total))
    ctx.dtypes[seed] = ctx.dtype(scores)
    return seed


def _softmax_seed(ctx: VjpContext, scores: str) -> str:
    """``s ⊙ (w − Σ_c s_c w_c)`` with s = softmax(z) [batch, classes]: the vector-Jacobian product of
    ``w · softmax(z)`` (the Softmax rule, seeded with w)."""
    probabilities = ctx.op("Softmax", scores, axis=-1)
    expected = ctx.op("ReduceSum", ctx.op("Mul", probabilities, CLASS_WEIGHTS), ctx.ints([-1]), keepdims=1)
    seed = ctx.op("Mul", probabilities, ctx.op("Sub", CLASS_WEIGHTS, expected))
    ctx.dtypes[seed] = ctx.dtype(scores)
    return seed


_SCORE_SEEDS = {
    "linear": lambda ctx, scores: CLASS_WEIGHTS,
    "softmax": _softmax_seed,
    "log_softmax": _log_softmax_seed,
}
"""``score_seed`` → the seed of the backward sweep at the scores (see :func:`build_gradient_model`)."""


def _baseline_pass(graph: onnx.GraphProto, input_name: str, differentiable: set[str]) -> dict[str, str]:
    """Append a copy of every input-dependent forward node, fed by BASELINE_INPUT.

    Returns the map tensor → its twin in the baseline pass."""
    twins = {input_name: BASELINE_INPUT}
    copies = []
    for node in graph.node:
        if not any(name in twins for name in node.input):
            continue
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = f"{node.name or node.output[0]}@baseline"
        for i, name in enumerate(node.input):
            copy.input[i] = twins.get(name, name)
        for i, name in enumerate(node.output):
            if name:
                twins[name] = copy.output[i] = f"{name}@baseline"
        copies.append(copy)
    graph.node.extend(copies)
    for value in graph.input:
        if value.name == input_name:
            twin = onnx.ValueInfoProto()
            twin.CopyFrom(value)
            twin.name = BASELINE_INPUT
            graph.input.append(twin)
            break
    return {name: twin for name, twin in twins.items() if name in differentiable}


def _assemble(model, ctx, input_name, output_name, score_tensor, extra_outputs, layer_outputs,
              baseline_pass: bool) -> GradientModel:
    graph = model.graph
    graph.node.extend(ctx.nodes)
    graph.initializer.extend(ctx.initializers)
    for alias, source, _ in extra_outputs:
        graph.node.append(helper.make_node("Identity", [source], [alias], name=f"grad/out/{alias}"))
    score_dtype = helper.np_dtype_to_tensor_dtype(ctx.dtype(score_tensor))
    score_shape = ctx.static_shape(score_tensor) or ("batch", None)
    graph.input.append(helper.make_tensor_value_info(CLASS_WEIGHTS, score_dtype, list(score_shape)))
    for alias, _, alike in extra_outputs:
        elem = helper.np_dtype_to_tensor_dtype(ctx.dtype(alike))
        shape = ctx.static_shape(alike)
        dims = [d if d is not None else None for d in shape] if shape is not None else None
        graph.output.append(helper.make_tensor_value_info(alias, elem, dims))
    eliminate_dead_code(graph, [output_name] + [alias for alias, _, _ in extra_outputs])
    del graph.value_info[:]  # (gradient shapes are declared after assembly)
    try:
        check_structure(model)
    except onnx.checker.ValidationError as exc:  # a rule emitted something invalid: a bug
        raise RuntimeError(f"the gradient graph is invalid: {exc}") from exc
    input_grad = INPUT_GRAD if extra_outputs and extra_outputs[0][0] == INPUT_GRAD else None
    return GradientModel(model, input_name, output_name, score_tensor, input_grad, layer_outputs,
                         BASELINE_INPUT if baseline_pass else None, tuple(ctx.approximations))


# ---------------------------------------------------------------------- analysis helpers
def _normalise(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    if default_opset(copy) < MIN_OPSET:
        copy = onnx.version_converter.convert_version(copy, MIN_OPSET)
    return copy


def _value_infos(model: onnx.ModelProto) -> tuple[dict[str, tuple], dict[str, np.dtype]]:
    try:  # on the skeleton: inference needs the weights' shapes, not their bytes
        inferred = onnx.shape_inference.infer_shapes(skeleton(model), data_prop=True)
    except Exception:  # inference is a help, not a requirement
        inferred = model
    shapes: dict[str, tuple] = {}
    dtypes: dict[str, np.dtype] = {}
    graph = inferred.graph
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        tensor_type = value.type.tensor_type
        if tensor_type.elem_type:
            try:
                dtypes[value.name] = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
            except (KeyError, TypeError):
                pass
        if tensor_type.HasField("shape"):
            shapes[value.name] = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor_type.shape.dim
            )
    for init in graph.initializer:
        dtypes[init.name] = np.dtype(helper.tensor_dtype_to_np_dtype(init.data_type))
        shapes[init.name] = tuple(init.dims)
    return shapes, dtypes


def _is_float(name: str, node: onnx.NodeProto, dtypes: dict[str, np.dtype]) -> bool:
    dtype = dtypes.get(name)
    if dtype is not None:
        return np.issubdtype(dtype, np.floating)
    return node.op_type not in _NON_FLOAT_OPS


def _pin_input_shape(graph: onnx.GraphProto, input_name: str, dims: Sequence[int | None]) -> None:
    for value in graph.input:
        if value.name == input_name:
            shape = value.type.tensor_type.shape
            for dim, known in zip(shape.dim, dims):
                if known is not None:
                    dim.dim_value = int(known)
