"""What the CAM family shares: the layer, the weighted-sum → ReLU → upsample pipeline, and a hook.

A CAM variant computes one weight per channel of a layer's activation A [K, h, w] and target t; the
map is ``ReLU(Σ_k w[t, k] · A_k)`` upsampled bilinearly (half-pixel centres, as cv2 and
pytorch-grad-cam do) to the input size. A gradient variant supplies only a :class:`ChannelWeights`
function of (activation, gradient) and registers it with :func:`register_cam` — as in
pytorch-grad-cam, where a CAM is a ``get_cam_weights`` override. CAM itself reads its weights from
the graph (:func:`linear_head`) and needs no gradient. Every CAM takes the one :class:`LayerParams`.

Maps are returned unnormalised (heatmaps are data; rendering normalises) in model-input pixels.
Several targets share one forward pass: the gradient graph seeds each (image, target) sample.
"""

from __future__ import annotations

import inspect
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import numpy_helper

from ..errors import FailedPrecondition
from ..events import Event, Explanation, Planned
from ..graph.perturbation import bilinear_matrix
from ..model import Evaluator, Introspection
from ..objectives import Objective
from ..params import MethodParams, param
from .registry import ExplainFn, Family, register


@dataclass(frozen=True, kw_only=True)
class LayerParams(MethodParams):
    """The one parameter of the CAM family (the proto's ``LayerParams`` too)."""

    layer: str = param("", doc='layer (ONNX tensor name) to explain; "" = the model\'s CAM layer')


class ChannelWeights(Protocol):
    """The hook of a gradient CAM variant.

    ``activation`` and ``gradient`` (of each target's score with respect to the activation) are
    float64 [T, K, h, w]; returns the channel weights, float64 [T, K].
    """

    def __call__(self, activation: NDArray[np.float64], gradient: NDArray[np.float64]) -> NDArray[np.float64]: ...


def resolve_layer(classifier: Introspection, requested: str) -> str:
    """``requested`` if the classifier has such a 4-D layer, else its CAM layer when ``requested`` is "".

    Raises:
        NotFound: an unknown layer name (the message lists the candidate layers).
        FailedPrecondition: "" requested and the model has no 4-D activation to explain.
    """
    layer = requested or classifier.cam_layer
    if layer is None:
        raise FailedPrecondition("the model has no 4-D activation [batch, channels, h, w] to explain with a CAM")
    return classifier.check_layer(layer)


def class_activation_maps(
    activation: NDArray[np.floating], weights: NDArray[np.floating], size: tuple[int, int], *, rectify: bool = True
) -> NDArray[np.float32]:
    """``Σ_k weights[t, k] · activation[.., k]``, ReLU'd when ``rectify``, upsampled bilinearly to ``size``.

    ``activation`` [K, h, w] (shared by the targets) or [T, K, h, w]; ``weights`` [T, K];
    returns float32 [T, H, W]. Upsampling is linear, so it commutes with positive scaling.
    """
    weights = np.asarray(weights, np.float64)[:, :, None, None]
    maps = (weights * np.asarray(activation, np.float64)).sum(axis=1)
    if rectify:
        maps = np.maximum(maps, 0.0)
    height, width = size
    rows, cols = bilinear_matrix(maps.shape[1], height), bilinear_matrix(maps.shape[2], width)
    return (rows @ maps @ cols.T).astype(np.float32)


def layer_gradients(
    model: Evaluator, image: NDArray[np.float32], objective: Objective, layer: str, *, rules: str = "vanilla"
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float32], NDArray[np.float32]]:
    """One image through the gradient graph for every target (T forward + T backward).

    Returns the layer's activation and gradient, float64 [T, K, h, w], the input gradient
    float32 [T, C, H, W] and the scores float32 [T].
    """
    (batch,) = list(model.gradients(1, lambda start, stop: image[None], objective, layers=[layer], rules=rules))
    activation, gradient = batch.layers[layer]
    return (activation[0].astype(np.float64), gradient[0].astype(np.float64), batch.input_grad[0],
            batch.scores[0])


def gradient_cam_maps(
    model: Evaluator, image: NDArray[np.float32], objective: Objective, layer: str, weights: ChannelWeights
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """The rectified, upsampled maps float32 [T, H, W] of a gradient variant, and the scores [T]."""
    activation, gradient, _, scores = layer_gradients(model, image, objective, layer)
    return class_activation_maps(activation, weights(activation, gradient), image.shape[1:]), scores


def gradient_cam(
    model: Evaluator, image: NDArray[np.float32], objective: Objective, params: LayerParams, weights: ChannelWeights
) -> Iterator[Event]:
    """The whole ``explain`` of a gradient CAM variant defined by its channel ``weights``.

    Passes: 1 F + 1 B per target. Raises as :func:`resolve_layer`, and ``GradientError`` when the
    model has an op without a gradient rule.
    """
    layer = resolve_layer(model.introspection, params.layer)
    yield Planned(forward=objective.num_targets, backward=objective.num_targets)
    heatmaps, scores = gradient_cam_maps(model, image, objective, layer, weights)
    yield Explanation(heatmaps=heatmaps, scores=scores, forward=model.context.forward,
                      backward=model.context.backward)


def register_cam(name: str, *, weights: ChannelWeights, citation: str) -> ExplainFn:
    """Register the gradient CAM variant ``name``: ReLU(Σ_k w[t, k] A_k) upsampled, w = ``weights``.

    The method's docstring is the weights function's (its first line is the summary ``ListMethods``
    shows); ``citation`` is the paper. Returns the registered ``explain``; raises ``ValueError`` on a
    duplicate name, as :func:`~.registry.register`.
    """

    def explain(model: Evaluator, image: NDArray[np.float32], objective: Objective, params: LayerParams, *, rng
                ) -> Iterator[Event]:
        yield from gradient_cam(model, image, objective, params, weights)

    explain.__name__, explain.__qualname__, explain.__module__ = name, name, weights.__module__
    explain.__doc__ = f"{inspect.cleandoc(weights.__doc__ or '')}\n\nPasses: 1 forward + 1 backward per target."
    return register(name, family=Family.GRADIENT, black_box=False, params=LayerParams, citation=citation)(explain)


# ---------------------------------------------------------------- reading a GAP → linear head

_RESHAPES = ("Flatten", "Reshape", "Squeeze")
_FINAL = ("Softmax", "LogSoftmax", "Sigmoid", "Identity")


_HEADS: weakref.WeakKeyDictionary[Introspection, dict[str, NDArray[np.float64]]] = weakref.WeakKeyDictionary()
"""Head weights already read, per classifier and layer (reading converts a megabyte-sized initializer)."""
_HEADS_LOCK = threading.Lock()


def linear_head(classifier: Introspection, layer: str) -> NDArray[np.float64]:
    """The class weights w [classes, K] of a head ``logits = w · GAP(layer) + b`` (Zhou et al. 2016).

    Follows the layer's consumers on the way to the class-score output: a global average pool
    (GlobalAveragePool, ReduceMean over H and W, or an AveragePool over the whole map), any
    Flatten/Reshape/Squeeze to [batch, K], then Gemm or MatMul with a constant weight, an optional
    constant bias Add and a final Softmax/Sigmoid. Read from the classifier's simplified graph
    (constant-folded) when it keeps the layer, else from the model.

    Raises:
        FailedPrecondition: the head is anything else; the message says what the layer feeds.
    """
    with _HEADS_LOCK:
        head = _HEADS.get(classifier, {}).get(layer)
    if head is None:
        head = _read_linear_head(classifier, layer)
        head.setflags(write=False)  # shared by every request
        with _HEADS_LOCK:
            _HEADS.setdefault(classifier, {})[layer] = head
    return head


def _read_linear_head(classifier: Introspection, layer: str) -> NDArray[np.float64]:
    simplified = classifier.simplified_model()
    graph = (simplified if layer in {o for n in simplified.graph.node for o in n.output} else classifier.model).graph
    head = _Head(graph, classifier.signature.output_name, classifier.tensor_shapes())
    channels = int(classifier.tensor_shapes()[layer][1])
    pool = head.next(layer)
    if not head.is_global_average_pool(pool, layer):
        raise FailedPrecondition(f"CAM needs a global average pool followed by a linear layer after {layer!r}; "
                                 f"the layer feeds {head.describe(layer)}, not a global average pool")
    features = pool.output[0]
    while (node := head.next(features)) is not None and node.op_type in _RESHAPES:
        if head.shape(node.output[0])[1:] not in ((channels,), ()):
            break
        features = node.output[0]
    linear = head.next(features)
    weights = head.linear_weights(linear, features, channels)
    if weights is None and channels == classifier.num_classes and head.stuck_before_output(features) is None:
        return np.eye(channels)  # the pooled maps are the class scores (SqueezeNet's head): w = I
    if weights is None:
        raise FailedPrecondition(f"CAM needs a linear layer after the global average pool of {layer!r}; the pooled "
                                 f"features feed {head.describe(features)}, not a Gemm or MatMul with constant "
                                 f"weights over their {channels} channels")
    stuck = head.stuck_before_output(linear.output[0])
    if stuck is not None:
        raise FailedPrecondition(f"CAM needs the linear layer after the global average pool of {layer!r} to give "
                                 f"the class scores; {stuck!r} feeds {head.describe(stuck)}, not a bias Add or a "
                                 "final Softmax/Sigmoid")
    return weights


class _Head:
    """Graph queries for :func:`linear_head`: consumers on the path to ``output``, constants, shapes."""

    def __init__(self, graph: onnx.GraphProto, output: str, shapes: dict[str, tuple]):
        self.output, self.shapes = output, shapes
        producers = {name: node for node in graph.node for name in node.output}
        needed, stack = set(), [output]
        while stack:  # tensors the output depends on
            name = stack.pop()
            if name not in needed:
                needed.add(name)
                stack.extend(producers[name].input if name in producers else ())
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            if any(name in needed for name in node.output):
                for name in set(node.input):
                    self.consumers.setdefault(name, []).append(node)
        self._tensors = {init.name: init for init in graph.initializer}  # converted on demand: a model's
        for node in graph.node:  # weights are megabytes, the head needs one matrix
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self._tensors[node.output[0]] = node.attribute[0].t

    def constant(self, name: str) -> NDArray | None:
        tensor = self._tensors.get(name)
        return None if tensor is None else numpy_helper.to_array(tensor)

    def next(self, tensor: str) -> onnx.NodeProto | None:
        """The one node consuming ``tensor`` on the way to the output (None if several or none)."""
        nodes = self.consumers.get(tensor, [])
        return nodes[0] if len(nodes) == 1 else None

    def describe(self, tensor: str) -> str:
        """What consumes ``tensor`` on the way to the output, for messages."""
        nodes = [f"{node.op_type} {node.name!r}" if node.name else node.op_type
                 for node in self.consumers.get(tensor, [])]
        if not nodes:
            return "nothing on the way to the class scores"
        return nodes[0] if len(nodes) == 1 else f"{len(nodes)} nodes ({', '.join(nodes)})"

    def shape(self, tensor: str) -> tuple:
        return tuple(self.shapes.get(tensor, ()))

    def is_global_average_pool(self, node: onnx.NodeProto | None, layer: str) -> bool:
        if node is None:
            return False
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "GlobalAveragePool":
            return True
        if node.op_type == "ReduceMean":
            axes = attributes.get("axes")
            if axes is None and len(node.input) > 1:
                constant = self.constant(node.input[1])
                axes = None if constant is None else constant.tolist()
            return axes is not None and sorted(a % 4 for a in axes) == [2, 3]
        if node.op_type == "AveragePool":
            size = list(self.shape(layer)[2:])
            return list(attributes.get("kernel_shape", [])) == size and not any(attributes.get("pads", []))
        return False

    def linear_weights(self, node: onnx.NodeProto | None, features: str, channels: int) -> NDArray[np.float64] | None:
        """[classes, K] of ``features`` [batch, K] @ a constant, or None if ``node`` is not that."""
        if node is None or len(node.input) < 2 or node.input[0] != features:
            return None
        matrix = self.constant(node.input[1])
        if matrix is None:
            return None
        matrix = matrix.astype(np.float64)
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Gemm" and not attributes.get("transA", 0):
            matrix = matrix if attributes.get("transB", 0) else matrix.T
            matrix = matrix if attributes.get("alpha", 1.0) == 1.0 else attributes["alpha"] * matrix
        elif node.op_type == "MatMul" and matrix.ndim == 2:
            matrix = matrix.T
        else:
            return None
        return matrix if matrix.ndim == 2 and matrix.shape[1] == channels else None

    def stuck_before_output(self, tensor: str) -> str | None:
        """None if ``tensor`` is the class-score output up to a constant bias Add and a final
        activation; else the tensor where the walk stopped."""
        while tensor != self.output:
            node = self.next(tensor)
            bias = node is not None and node.op_type == "Add" and any(i in self._tensors for i in node.input)
            if node is None or not (bias or node.op_type in _FINAL):
                return tensor
            tensor = node.output[0]
        return None
