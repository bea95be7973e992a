"""Gradient attributions: the one batched engine (:func:`attribute`) behind Integrated Gradients,
SmoothGrad and the plain gradient maps, and :func:`register_gradient`, which makes a method of one.

A gradient attribution is a :class:`GradientAttribution` hook — a rule set for the backward pass,
a per-channel ``finish`` of the path gradients and a channel ``reduce`` to the heatmap. A method
registered with an ``attribution`` factory (``@register(..., attribution=...)``, or
:func:`register_gradient`, which registers both at once) is one SmoothGrad can wrap: SmoothGrad's
``inner`` choices are exactly those methods (:func:`~.registry.gradient_attributions`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..events import Event, Explanation, Planned
from ..model import Evaluator
from ..objectives import Objective
from ..params import MethodParams, NoParams
from ..perturb.paths import Quadrature, straight_path
from .registry import Family, register

ONE_POINT = Quadrature(np.ones(1), np.ones(1))

Finish = Callable[[NDArray, NDArray, NDArray], NDArray]
"""``finish(x [n, C, H, W], x′ [n, C, H, W], G [n, T, C, H, W]) -> attribution [n, T, C, H, W]``."""


def sum_channels(attribution: NDArray) -> NDArray[np.float32]:
    """The signed channel sum: [..., C, H, W] → float32 [..., H, W]."""
    return attribution.sum(axis=-3).astype(np.float32)


def max_channels(attribution: NDArray) -> NDArray[np.float32]:
    """The channel maximum: [..., C, H, W] → float32 [..., H, W]."""
    return attribution.max(axis=-3).astype(np.float32)


def times_difference(x: NDArray, baseline: NDArray, gradient: NDArray) -> NDArray:
    """(x − x′) ⊙ G, per channel: the finish of Integrated Gradients and DeepLIFT."""
    return (x - baseline)[:, None] * gradient


@dataclass(frozen=True)
class GradientAttribution:
    """A gradient attribution method, batched — the one hook SmoothGrad composes::

        a(x) = finish(x, x′, Σᵢ wᵢ ∇f(x′ + αᵢ (x − x′)))    per channel, [T, C, H, W]

    with the baseline x′ (``baseline`` [C, H, W] for every input; None = 0) and the nodes αᵢ /
    weights wᵢ of ``path``; the heatmap is ``reduce(a)`` [T, H, W]. A plain gradient method is the
    one-node path α = 1 (saliency: finish = |G|, reduce = max over channels); Integrated Gradients
    is finish = (x − x′) ⊙ G. ``finish`` is a :data:`Finish`; ``rules`` names the gradient graph's
    rule set ("vanilla", "guided_backprop", "deconvnet", "deeplift_rescale"). With ``baseline_pass``
    the graph also evaluates x′ for DeepLIFT's rules.
    """

    finish: Finish
    reduce: Callable[[NDArray], NDArray[np.float32]] = sum_channels
    path: Quadrature = ONE_POINT
    baseline: NDArray[np.float32] | None = None
    rules: str = "vanilla"
    baseline_pass: bool = False

    def baselines(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """x′ for each input of ``x`` [n, C, H, W] (a broadcast view, not a copy)."""
        return np.zeros_like(x) if self.baseline is None else np.broadcast_to(self.baseline, x.shape)


AttributionFactory = Callable[[MethodParams, NDArray[np.float32] | None], GradientAttribution]
"""``factory(params, baseline)``: a method's :class:`GradientAttribution` for its ``params`` and the
baseline x′ [C, H, W] of the path methods (None = 0; ignored by methods without one)."""


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
        ref = attribution.baselines(x)
        made.update({int(k[0]) + i: (x, ref, i) for i in range(len(x))})
        return x if plain else straight_path(ref[k - k[0]], x[k - k[0]], path.alphas[np.arange(start, stop) % m])

    def finish(inputs: list[int], sums: NDArray, *, keep: bool = False) -> NDArray:
        parts = [made[k] if keep else made.pop(k) for k in inputs]
        x, ref, first = parts[0]
        if all(p[0] is x and p[2] == first + j for j, p in enumerate(parts)):  # one block: no copies
            return attribution.finish(x[first : first + len(parts)], ref[first : first + len(parts)], sums)
        return attribution.finish(np.stack([p[0][p[2]] for p in parts]), np.stack([p[1][p[2]] for p in parts]), sums)

    sums: dict[int, NDArray[np.float64]] = {}
    fixed = attribution.baselines(make_inputs(0, 1))[0] if attribution.baseline_pass else None
    for batch in model.gradients(count * m, images, objective, rules=attribution.rules, baseline=fixed):
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


def objective_values(model: Evaluator, images: NDArray[np.float32], objective: Objective) -> NDArray[np.float32]:
    """The objective's values [n, T] of ``images`` [n, C, H, W]: one plain forward each."""
    return np.concatenate([v for _, _, v in model.objective_values(len(images), lambda a, b: images[a:b], objective)])


def register_gradient(
    name: str, *, finish: Finish, citation: str, doc: str, rules: str = "vanilla",
    reduce: Callable[[NDArray], NDArray[np.float32]] = sum_channels,
) -> GradientAttribution:
    """Register a parameterless gradient method: ``reduce(finish(x, 0, ∇f(x)))`` under the rule set
    ``rules``, one forward + one backward per target. ``doc`` is its docstring (the first line is
    the summary ``ListMethods`` shows); ``citation`` the paper. SmoothGrad can wrap it by ``name``.

    Returns the hook, for methods that reuse its rules or reduction (guided Grad-CAM). Raises
    ``ValueError`` on a duplicate name, as :func:`~.registry.register`.
    """
    hook = GradientAttribution(finish=finish, reduce=reduce, rules=rules)

    def explain(model: Evaluator, image: NDArray[np.float32], objective: Objective, params: NoParams, *, rng
                ) -> Iterator[Event]:
        yield Planned(forward=objective.num_targets, backward=objective.num_targets)
        (step,) = attribute(model, hook, 1, lambda start, stop: image[None], objective)
        yield Explanation(heatmaps=hook.reduce(step.attributions[0]), scores=step.scores[0],
                          forward=model.context.forward, backward=model.context.backward)

    explain.__name__, explain.__qualname__, explain.__module__, explain.__doc__ = name, name, finish.__module__, doc
    register(name, family=Family.GRADIENT, black_box=False, params=NoParams, citation=citation,
             attribution=lambda params, baseline: hook)(explain)
    return hook
