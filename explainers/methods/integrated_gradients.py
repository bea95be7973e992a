"""Integrated Gradients (Sundararajan, Taly & Yan 2017, [62] in the survey), and the batched
gradient-attribution hook that SmoothGrad composes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..events import Event, Explanation, Planned, Progress
from ..model import Evaluator
from ..objectives import Objective
from ..params import param
from ..perturb.paths import QUADRATURE, Quadrature, quadrature, straight_path
from .reference_input import ReferenceParams
from .registry import Family, register

ONE_POINT = Quadrature(np.ones(1), np.ones(1))


def sum_channels(attribution: NDArray) -> NDArray[np.float32]:
    return attribution.sum(axis=-3).astype(np.float32)


@dataclass(frozen=True)
class GradientAttribution:
    """A gradient attribution method, batched — the one hook SmoothGrad composes::

        a(x) = finish(x, x′, Σᵢ wᵢ ∇f(x′ + αᵢ (x − x′)))    per channel, [T, C, H, W]

    with x′ = ``reference(x)`` and the nodes αᵢ / weights wᵢ of ``path``; the heatmap is
    ``reduce(a)`` [T, H, W]. A plain gradient method is the one-node path α = 1 (saliency:
    finish = |G|, reduce = max over channels); Integrated Gradients is finish = (x − x′) ⊙ G.
    ``finish`` takes x, x′ [n, C, H, W] and G [n, T, C, H, W]; ``rules`` names the gradient
    graph's rule set ("vanilla", "guided_backprop", "deconvnet", "deeplift_rescale"). With
    ``reference_pass`` the graph also evaluates x′ for DeepLIFT's rules; it is fed once per request,
    so ``reference`` must then not depend on x (a fixed baseline, broadcast).
    """

    finish: Callable[[NDArray, NDArray, NDArray], NDArray]
    reduce: Callable[[NDArray], NDArray[np.float32]] = sum_channels
    path: Quadrature = ONE_POINT
    reference: Callable[[NDArray[np.float32]], NDArray[np.float32]] = np.zeros_like
    rules: str = "vanilla"
    reference_pass: bool = False


@dataclass(frozen=True)
class AttributionStep:
    """After one gradient batch: its ``scores`` [n, T] and ``nodes`` [n] (path node of each image),
    the ``inputs`` finished in it (in order) with their ``attributions`` [len(inputs), T, C, H, W],
    and with ``partial=True`` the attribution [T, C, H, W] of the nodes so far of the input still
    in progress."""

    scores: NDArray[np.float32]
    nodes: NDArray[np.int64]
    inputs: list[int]
    attributions: NDArray | None
    partial: NDArray | None


def attribute(
    model: Evaluator, attribution: GradientAttribution, count: int,
    make_inputs: Callable[[int, int], NDArray[np.float32]], objective: Objective, *, partial: bool = False,
) -> Iterator[AttributionStep]:
    """Attributions of ``count`` inputs: their count × m path points, input-major, go through the
    one batched loop (:meth:`Evaluator.gradients`); sums over path nodes are float64 across batches.
    ``make_inputs(k0, k1)`` returns inputs [k1 − k0, C, H, W]; it must be deterministic (an input
    whose nodes span two chunks is built twice). Inputs built for the feed are kept until they finish."""
    m, path = len(attribution.path), attribution.path
    plain = m == 1 and path.alphas[0] == 1  # a plain gradient method: the points are the inputs
    made: dict[int, tuple[NDArray, NDArray, int]] = {}  # input → (x block, x′ block, its row), until it finishes

    def images(start: int, stop: int) -> NDArray[np.float32]:  # runs on the loop's feed thread
        k = np.arange(start, stop) // m
        x = make_inputs(k[0], k[-1] + 1)
        ref = attribution.reference(x)
        made.update({int(k[0]) + i: (x, ref, i) for i in range(len(x))})
        return x if plain else straight_path(ref[k - k[0]], x[k - k[0]], path.alphas[np.arange(start, stop) % m])

    def finish(inputs: list[int], sums: NDArray, *, keep: bool = False) -> NDArray:
        parts = [made[k] if keep else made.pop(k) for k in inputs]
        x, ref, first = parts[0]
        if all(p[0] is x and p[2] == first + j for j, p in enumerate(parts)):  # one block: no copies
            return attribution.finish(x[first : first + len(parts)], ref[first : first + len(parts)], sums)
        return attribution.finish(np.stack([p[0][p[2]] for p in parts]), np.stack([p[1][p[2]] for p in parts]), sums)

    sums: dict[int, NDArray[np.float64]] = {}
    fixed = attribution.reference(make_inputs(0, 1))[0] if attribution.reference_pass else None
    for batch in model.gradients(count * m, images, objective, rules=attribution.rules, reference=fixed):
        rows = np.arange(batch.start, batch.stop)
        owner, nodes = rows // m, rows % m
        if m == 1:  # one node per input: nothing to accumulate
            done = rows.tolist()
            grads = batch.input_grad if path.weights[0] == 1 else batch.input_grad * np.float32(path.weights[0])
        else:
            for k in np.unique(owner):  # a float32 product per batch (no float64 copy of the gradients), float64 sums
                mine = owner == k
                weights = path.weights[nodes[mine]].astype(np.float32)
                part = np.tensordot(weights, batch.input_grad[mine], 1)
                sums[int(k)] = np.add(sums.get(int(k), 0.0), part, dtype=np.float64)
            done = [k for k in sorted(sums) if (k + 1) * m <= batch.stop]
            grads = np.stack([sums.pop(k) for k in done]) if done else None
        ongoing = finish([k], sums[k][None], keep=True)[0] if partial and (k := max(sums, default=-1)) >= 0 else None
        yield AttributionStep(batch.scores, nodes, done, finish(done, grads) if done else None, ongoing)


def integrated(path: Quadrature, reference: Callable[[NDArray[np.float32]], NDArray[np.float32]] = np.zeros_like,
               ) -> GradientAttribution:
    """Integrated Gradients as a :class:`GradientAttribution`: (x − x′) ⊙ Σᵢ wᵢ ∇f(x′ + αᵢ(x − x′))."""
    return GradientAttribution(finish=lambda x, ref, g: (x - ref)[:, None] * g, path=path, reference=reference)


def objective_values(model: Evaluator, images: NDArray[np.float32], objective: Objective) -> NDArray[np.float32]:
    """The objective's values [n, T] of ``images`` [n, C, H, W]: one plain forward each."""
    return np.concatenate([v for _, _, v in model.objective_values(len(images), lambda a, b: images[a:b], objective)])


def forward_scores_differentiated(model: Evaluator, objective: Objective) -> bool:
    """Whether plain forwards give the objective on the scores the gradient graph differentiates.
    Not so when the evaluator cuts a final Softmax/Sigmoid to differentiate the logits (it does
    unless the objective asks for probabilities): then only its reference pass measures them."""
    return objective.space == "probability" or model.classifier.signature.output_producer not in ("Softmax", "Sigmoid")


@dataclass(frozen=True, kw_only=True)
class IntegratedGradientsParams(ReferenceParams):
    steps: int = param(50, low=2, high=1024, doc="path points m (model evaluations per target)")
    rule: str = param("gauss_legendre", choices=QUADRATURE, doc="quadrature of the path integral")


@register(
    "integrated_gradients",
    family=Family.GRADIENT,
    black_box=False,
    params=IntegratedGradientsParams,
    reference="Sundararajan, Taly & Yan, Axiomatic Attribution for Deep Networks, ICML 2017",
)
def integrated_gradients(
    model: Evaluator, image: NDArray[np.float32], objective: Objective, params: IntegratedGradientsParams, *, rng
) -> Iterator[Event]:
    """(x − x′) ⊙ ∫₀¹ ∇f(x′ + α(x − x′)) dα summed over channels (signed); the paper's eq. 1 by quadrature.

    Passes: m F+B per target, batched, plus one forward for each path end the rule lacks (f(x′)
    and f(x): Gauss–Legendre and the midpoint rule have neither) — or, when the gradient graph
    differentiates logits the model does not output (a final Softmax/Sigmoid), 2 F + 1 B per
    target for f(x) − f(x′) in logits. Extras: ``completeness_gap`` Σ attr − (f(x) − f(x′)) (the
    paper's completeness axiom; Captum's ``compute_convergence_delta``),
    ``completeness_gap_relative`` = |gap| / |f(x) − f(x′)| and ``score_difference`` f(x) − f(x′),
    for target 0 and as ``name[t]`` per target.
    """
    reference = params.reference(model, image, rng)
    ig = integrated(quadrature(params.rule, params.steps), lambda x: np.broadcast_to(reference, x.shape))
    targets, m = objective.num_targets, len(ig.path)
    if forward_scores_differentiated(model, objective):  # path ends from the path, else one forward each
        nodes = {alpha: node for alpha in (0.0, 1.0) if (node := ig.path.index_of(alpha)) is not None}
        missing = [alpha for alpha in (1.0, 0.0) if alpha not in nodes]
        planned = Planned(forward=m * targets + len(missing), backward=m * targets)
    else:  # logits: f(x) − f(x′) from one gradient pass with a reference pass (2 F + 1 B per target)
        nodes, missing = {}, None
        planned = Planned(forward=(m + 2) * targets, backward=(m + 1) * targets)
    yield planned

    ends: dict[float, NDArray[np.float32]] = {}
    for step in attribute(model, ig, 1, lambda a, b: image[None], objective, partial=True):
        for alpha, node in nodes.items():
            for row in np.flatnonzero(step.nodes == node):
                ends[alpha] = step.scores[row]
        attribution = step.attributions[0] if step.inputs else step.partial
        yield Progress(done=model.context.forward + model.context.backward, total=planned.total,
                       heatmaps=ig.reduce(attribution))
    if missing is None:
        (batch,) = model.gradients(1, lambda a, b: image[None], objective, reference=reference)
        scores, delta = batch.scores[0], batch.score_delta[0].astype(np.float64)
    else:
        if missing:
            images = np.stack([image if alpha else reference for alpha in missing])
            ends.update(zip(missing, objective_values(model, images, objective)))
        scores, delta = ends[1.0], ends[1.0].astype(np.float64) - ends[0.0]
    gap = attribution.sum(axis=(1, 2, 3)) - delta
    relative = np.abs(gap) / np.maximum(np.abs(delta), np.finfo(np.float32).tiny)
    extras = {}
    for name, values in (("completeness_gap", gap), ("completeness_gap_relative", relative),
                         ("score_difference", delta)):
        extras[name] = float(values[0])
        extras.update({f"{name}[{t}]": float(value) for t, value in enumerate(values)})
    yield Explanation(heatmaps=ig.reduce(attribution), scores=scores.astype(np.float32),
                      forward=model.context.forward, backward=model.context.backward, extras=extras)
