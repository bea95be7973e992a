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
from numpy.typing import NDArray

from ..errors import FailedPrecondition
from ..events import Event, Explanation, Planned
from ..graph.cam_head import linear_head_weights
from ..graph.index import GraphIndex
from ..graph.layers import missing_cam_layer
from ..model import Evaluator, Introspection
from ..objectives import Objective
from ..params import MethodParams, param
from ..perturb.masks.bilinear import bilinear_matrix
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
        FailedPrecondition: "" requested and the model has no default CAM layer (the message lists
            the candidate layers).
    """
    layer = requested or classifier.cam_layer
    if layer is None:
        raise FailedPrecondition(missing_cam_layer(classifier.layers()))
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
    model: Evaluator, image: NDArray[np.float32], objective: Objective, layer: str, *, rules: str = "vanilla",
    input_gradient: bool = False,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float32] | None, NDArray[np.float32]]:
    """One image through the gradient graph for every target (T forward + T backward).

    Returns the layer's activation and gradient, float64 [T, K, h, w] (channels first, whatever the
    layer's layout in the graph), the input gradient float32 [T, C, H, W] (None unless
    ``input_gradient``: without it the backward stops at the layer) and the scores float32 [T].
    """
    (batch,) = list(model.gradients(1, lambda start, stop: image[None], objective, layers=[layer], rules=rules,
                                    input_gradient=input_gradient))
    activation, gradient = batch.layers[layer]
    canonical = model.introspection.layer(layer).canonical
    return (canonical(activation[0]).astype(np.float64), canonical(gradient[0]).astype(np.float64),
            None if batch.input_grad is None else batch.input_grad[0], batch.scores[0])


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

_HEADS: weakref.WeakKeyDictionary[Introspection, dict[str, NDArray[np.float64]]] = weakref.WeakKeyDictionary()
"""Head weights already read, per classifier and layer (reading converts a megabyte-sized initializer)."""
_HEADS_LOCK = threading.Lock()


def linear_head(classifier: Introspection, layer: str) -> NDArray[np.float64]:
    """The class weights w [classes, K] of a head ``logits = w · GAP(layer) + b`` (Zhou et al. 2016).

    The head is recognised as :mod:`explainers.graph.cam_head` describes, in the classifier's
    simplified graph (constant-folded) when it keeps the layer, else in the model.

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
    index = GraphIndex(classifier.simplified_model())
    index = index if layer in index.producers else GraphIndex(classifier.model)
    return linear_head_weights(index, classifier.signature.output_name, classifier.tensor_shapes(),
                               classifier.layer(layer), classifier.num_classes)
