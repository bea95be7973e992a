"""The graphs compiled from one classifier, each named by a frozen :class:`Variant`.

A variant is everything that changes the graph: the plain model, the model with layers exposed
as outputs, a gradient graph (layers, rule set, where the scores are cut, a baseline pass), the
model behind a perturbation prefix, and that prefix's gradient graph. :func:`build_variant` is the
one place that builds them; :class:`~.session.SessionPool` compiles and keeps them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields

import numpy as np
import onnx

from ..autodiff import GradientModel, build_gradient_model
from ..graph.baseline_pass import feed_baseline_once
from ..graph.expose import expose_outputs
from ..graph.perturbation import MaskSource, prefixed_model
from .graph_cache import GraphCache, cache_key
from .introspect import Introspection
from .preprocessing import ModelInput

PLAIN = "plain"
EXPOSED = "exposed"
GRADIENT = "gradient"
PREFIX = "prefix"
PREFIX_GRADIENT = "prefix_gradient"
GRADIENT_KINDS = (GRADIENT, PREFIX_GRADIENT)
"""The variants that differentiate the model (their sessions must be on a provider that computes them
exactly, see :mod:`.provider_check`)."""


@dataclass(frozen=True, kw_only=True)
class Variant:
    """One graph compiled from the classifier; equal variants share one session.

    ``kind`` is one of :data:`PLAIN`, :data:`EXPOSED` (``layers`` as extra outputs),
    :data:`GRADIENT` (``layers``, ``rules``, ``cut_final_activation``, ``baseline_pass``,
    ``score_seed``: what the graph differentiates (see ``build_gradient_model``), and ``input_gradient``:
    whether it back-propagates to the image or stops at the layers),
    :data:`PREFIX` (behind ``source``) and :data:`PREFIX_GRADIENT` (behind ``source``,
    differentiated with respect to the prefix input ``wrt``, with ``cut_final_activation`` and
    ``score_seed``). A perturbation prefix is known by its name (``source_name``): the
    :class:`MaskSource` itself only rides along to build it.
    """

    kind: str
    layers: tuple[str, ...] = ()
    rules: str = "vanilla"
    cut_final_activation: bool = True
    baseline_pass: bool = False
    score_seed: str = "linear"
    input_gradient: bool = True
    source_name: str = ""
    wrt: str = ""
    source: MaskSource | None = field(default=None, compare=False, repr=False)

    @classmethod
    def exposing(cls, layers: tuple[str, ...]) -> Variant:
        return cls(kind=EXPOSED, layers=tuple(layers))

    @classmethod
    def gradient(cls, *, layers: tuple[str, ...] = (), rules: str = "vanilla", cut_final_activation: bool = True,
                 baseline_pass: bool = False, score_seed: str = "linear", input_gradient: bool = True) -> Variant:
        return cls(kind=GRADIENT, layers=tuple(layers), rules=rules, cut_final_activation=cut_final_activation,
                   baseline_pass=baseline_pass, score_seed=score_seed, input_gradient=input_gradient)

    @classmethod
    def prefix(cls, source: MaskSource) -> Variant:
        return cls(kind=PREFIX, source_name=source.name, source=source)

    @classmethod
    def prefix_gradient(cls, source: MaskSource, wrt: str, *, cut_final_activation: bool = True,
                        score_seed: str = "linear") -> Variant:
        return cls(kind=PREFIX_GRADIENT, source_name=source.name, wrt=wrt, source=source,
                   cut_final_activation=cut_final_activation, score_seed=score_seed)


PLAIN_VARIANT = Variant(kind=PLAIN)
"""The classifier as loaded (with its working batch)."""


def build_variant(variant: Variant, graph: Introspection, model_input: ModelInput
                  ) -> tuple[onnx.ModelProto, GradientModel | None]:
    """The graph of ``variant`` and, for gradient graphs, the names of its extra inputs and outputs.

    Gradient graphs start from the simplified model (see :meth:`Introspection.simplified_model`)
    unless it folded away an exposed layer.

    Raises:
        GradientError: the model has an op without a gradient rule (named in the message).
    """
    model, signature = graph.model, graph.signature
    input_type = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(model_input.dtype))
    if variant.kind == PLAIN:
        return model, None
    if variant.kind == EXPOSED:
        return expose_outputs(model, list(variant.layers)), None
    if variant.kind == PREFIX:
        return prefixed_model(model, signature.input_name, layout=signature.layout, input_type=input_type,
                              source=variant.source), None
    if variant.kind == PREFIX_GRADIENT:
        prefixed = prefixed_model(graph.simplified_model(), signature.input_name, layout=signature.layout,
                                  input_type=input_type, source=variant.source)
        built = build_gradient_model(prefixed, input_name=variant.wrt, output_name=signature.output_name,
                                     shape_hints=graph.tensor_shapes(), cut_final_activation=variant.cut_final_activation,
                                     score_seed=variant.score_seed)
        return built.model, built
    if variant.kind != GRADIENT:
        raise ValueError(f"unknown graph variant {variant.kind!r}")
    simplified = graph.simplified_model()
    present = {name for node in simplified.graph.node for name in node.output}
    base = simplified if all(layer in present for layer in variant.layers) else model
    built = build_gradient_model(
        base, input_name=signature.input_name, output_name=signature.output_name, layers=variant.layers,
        rules=variant.rules, cut_final_activation=variant.cut_final_activation,
        input_shape=(None, *model_input.model_shape), shape_hints=graph.tensor_shapes(),
        baseline_pass=variant.baseline_pass, score_seed=variant.score_seed,
        input_gradient=variant.input_gradient,
    )
    if variant.baseline_pass:
        built = feed_baseline_once(built)
    return built.model, built


CACHED_KINDS = GRADIENT_KINDS
"""The variants worth a disk cache: gradient graphs (the others are a cheap edit of the model)."""


def build_variant_cached(variant: Variant, graph: Introspection, model_input: ModelInput, *,
                         cache: GraphCache | None, model_hash: Callable[[], str]
                         ) -> tuple[onnx.ModelProto, GradientModel | None]:
    """:func:`build_variant` through the disk ``cache`` (see :mod:`.graph_cache`) for gradient kinds.

    ``model_hash()`` is the classifier's content digest (asked only when the cache is used).
    """
    if cache is None or variant.kind not in CACHED_KINDS:
        return build_variant(variant, graph, model_input)
    fields_ = {f.name: getattr(variant, f.name) for f in fields(variant) if f.compare}
    key = cache_key(model_hash(), fields_, (model_input.layout, str(np.dtype(model_input.dtype)), *model_input.shape))
    entry = cache.load(key)
    if entry is not None:
        try:
            return entry.model, _gradient_from_meta(entry.model, entry.meta)
        except (KeyError, TypeError, ValueError):  # a well-formed file with wrong metadata: rebuild
            pass
    model, gradient = build_variant(variant, graph, model_input)
    cache.store(key, model, _gradient_meta(gradient))
    return model, gradient


def _gradient_meta(gradient: GradientModel) -> dict:
    return {"input_name": gradient.input_name, "score_output": gradient.score_output,
            "score_tensor": gradient.score_tensor, "input_grad": gradient.input_grad,
            "layers": {name: list(pair) for name, pair in gradient.layers.items()},
            "baseline_input": gradient.baseline_input, "approximations": list(gradient.approximations)}


def _gradient_from_meta(model: onnx.ModelProto, meta: dict) -> GradientModel:
    """The names stored with a cached graph, checked against it.

    Raises:
        KeyError, TypeError, ValueError: the metadata is incomplete or names outputs the graph lacks.
    """
    layers = {str(name): (str(a), str(g)) for name, (a, g) in meta["layers"].items()}
    gradient = GradientModel(model, str(meta["input_name"]), str(meta["score_output"]), str(meta["score_tensor"]),
                             meta["input_grad"], layers, meta["baseline_input"],
                             tuple(str(a) for a in meta["approximations"]))
    outputs = {v.name for v in model.graph.output}
    wanted = [gradient.score_output, *(name for pair in layers.values() for name in pair)]
    if gradient.input_grad is not None:
        wanted.append(gradient.input_grad)
    if not set(wanted) <= outputs:
        raise ValueError("the cached graph lacks outputs its metadata names")
    return gradient
