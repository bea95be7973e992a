"""CDeepEx: contrastive explanations in a generator's latent space (Feghahati, Shelton, Pazzani & Tang,
"CDeepEx: Contrastive Deep Explanations", ECAI 2020, [18] in the survey).

"Why P and not Q?" is answered with an image: the input moved, along the data manifold a generator G
learned, just far enough that the classifier f can no longer tell P from Q. With s = f's class scores
(logits; for a Softmax output, log-probabilities, whose differences are the logits'):

1. **Locate x in the latent space**: z₀ = argmin_z ½‖G(z) − x‖², by Adam from E(x) when an encoder
   companion is given, else from z = 0 (the prior's mean).
2. **Nearest maximally ambiguous point**: the paper's constrained problem

       z′ = argmin_z ½‖z − z₀‖²   subject to   h(z) = s_P(G(z)) − s_Q(G(z)) = 0,
                                              g_{P,i}(z) = s_P − s_i ≥ 0,  g_{Q,i}(z) = s_Q − s_i ≥ 0  (i ∉ {P, Q}),

   i.e. the decoding scores P and Q equally and both above every other class. Solved, as the paper
   does, by the augmented Lagrangian method (Nocedal & Wright, Numerical Optimization, 2nd ed., §17.3–17.4,
   eq. 17.65 for the inequalities): minimise

       L_A(z; λ, μ, c) = ½‖z − z₀‖² + λ h + (c/2) h² + (1/2c) Σᵢ [max(0, μᵢ − c gᵢ)² − μᵢ²]

   with Adam for ``inner_steps``, then λ ← λ + c h, μᵢ ← max(0, μᵢ − c gᵢ), and c ← ``penalty_growth``·c
   when |h| fell by less than a factor 4 and is still above the tolerance — ``outer_steps`` times. Its gradient is
   ∇_z L_A = (z − z₀) + J_Gᵀ ∇_x (wᵀ s)(G(z)) with w = ∂L_A/∂s = (λ + c h)(e_P − e_Q) − Σᵢ max(0, μᵢ − c gᵢ) ∇_s gᵢ:
   the classifier's input gradient seeded with w (one gradient-graph pass), pulled back through G by the
   generator's vector-Jacobian product (its own gradient graph, :mod:`~..model.companions`).

The heatmap is the difference G(z′) − G(z₀) summed over channels (signed: positive where the ambiguous
image is brighter), the change that moves the reconstruction to the P/Q boundary; G(z₀) rather than x is
the reference so that the generator's reconstruction error is not mistaken for the explanation (reported
as ``reconstruction_error``). The images themselves travel in the result's ``tensors``:
``contrast_image`` G(z′) and ``reconstruction`` G(z₀), each [targets, C, H, W] in model-input space.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..autodiff import INPUT_GRAD
from ..errors import FailedPrecondition, InvalidArgument
from ..events import Event, Explanation, Planned, Progress
from ..model import CompanionHandle, Evaluator
from ..objectives import Objective
from ..params import MethodParams, param
from ..perturb.extremal import Adam
from .registry import Family, register

SLOW_PROGRESS = 4.0
"""The penalty grows unless |h| shrank at least this many times in an outer step (Nocedal & Wright's 1/4)."""


@dataclass(frozen=True, kw_only=True)
class CDeepExParams(MethodParams):
    generator: str = param("", doc="name of the companion generator model G: latent z [d] → image [C, H, W] "
                                   "in the classifier's input space (required)")
    encoder: str = param("", doc="optional companion encoder E: image → z; the latent search starts at E(x) "
                                 "(empty: at z = 0)")
    reconstruction_steps: int = param(200, low=0, high=10000,
                                      doc="Adam steps locating z₀ = argmin ‖G(z) − x‖² (2 F + 1 B of G each)")
    reconstruction_rate: float = param(0.05, low=1e-6, high=10.0, doc="Adam step size in latent units, locating z₀")
    outer_steps: int = param(10, low=1, high=1000, doc="augmented-Lagrangian multiplier updates")
    inner_steps: int = param(20, low=1, high=1000, doc="Adam steps on z′ per multiplier update "
                                                      "(2 F + 1 B of G and 2 F + 1 B of the classifier each)")
    learning_rate: float = param(0.02, low=1e-6, high=10.0, doc="Adam step size in latent units, searching z′")
    penalty: float = param(1.0, low=1e-6, high=1e6, doc="initial penalty c of the augmented Lagrangian")
    penalty_growth: float = param(2.0, low=1.0, high=100.0, doc="factor c grows by when |s_P − s_Q| shrinks too slowly")
    tolerance: float = param(0.05, low=0.0, high=1.0, doc="reported as converged when |s_P − s_Q| ≤ tolerance · "
                                                          "|s_P − s_Q| at x and no other class beats P or Q by more")


def _contrast_pairs(objective: Objective) -> tuple[NDArray[np.intp], int]:
    """(P per target [T], Q): the objective must be "P rather than Q"."""
    if objective.contrast is None:
        raise InvalidArgument("target.contrast_class", "cdeepex explains \"P rather than Q\": give the contrast "
                                                       "class Q (P is each target class)")
    if objective.space == "probability":
        raise InvalidArgument("target.score", "cdeepex compares class logits (the paper's scores); "
                                              "leave the score space unset")
    if objective.cross_entropy:
        raise InvalidArgument("target.contrast_loss", "cdeepex makes the logits of P and Q equal (Feghahati et al. "
                                                      "2020), not a cross-entropy: use contrast_loss=difference")
    positives = np.asarray(objective.classes, np.intp)
    if np.any(positives == objective.contrast):
        raise InvalidArgument("target.contrast_class", f"class {objective.contrast} cannot be contrasted with itself")
    return positives, int(objective.contrast)


def _companion(model: Evaluator, name: str, field: str) -> CompanionHandle:
    if not name:
        raise InvalidArgument(f"params.{field}", "required: the name of a companion generator model (G: z → image) "
                                                 "loaded beside the classifier")
    return model.companion(name)


def _check_shapes(model: Evaluator, generator: CompanionHandle, encoder: CompanionHandle | None) -> None:
    if generator.output_shape != model.shape:
        raise FailedPrecondition(f"generator {generator.name!r} makes images {list(generator.output_shape)}; the "
                                 f"classifier takes {list(model.shape)} (C, H, W)")
    if encoder is not None and (encoder.input_shape != model.shape or encoder.output_shape != generator.input_shape):
        raise FailedPrecondition(f"encoder {encoder.name!r} maps {list(encoder.input_shape)} → "
                                 f"{list(encoder.output_shape)}; allowed: {list(model.shape)} → "
                                 f"{list(generator.input_shape)} (the generator's latent)")
    producer = model.signature.output_producer
    if model.outputs_are_probabilities and producer != "Softmax":
        raise FailedPrecondition(f"the model outputs probabilities from {producer or 'an unknown op'}; cdeepex "
                                 "needs logits, or a Softmax whose log-probabilities differ as the logits do")


class Scores:
    """The classifier's comparable scores s [n, K]: logits, or log-probabilities of a Softmax output."""

    def __init__(self, model: Evaluator):
        self.model = model

    def __call__(self, images: NDArray[np.float32]) -> NDArray[np.float64]:
        return self.comparable(self.outputs(images))

    def outputs(self, images: NDArray[np.float32]) -> NDArray[np.float32]:
        """The model's class-score output [n, K] (one forward each)."""
        return self.model.layer_activations(images, [])[self.model.signature.output_name]

    def comparable(self, outputs: NDArray) -> NDArray[np.float64]:
        outputs = outputs.astype(np.float64)
        if self.model.outputs_are_probabilities:
            return np.log(np.maximum(outputs, np.finfo(np.float64).tiny))
        return outputs

    def input_gradient(self, images: NDArray[np.float32], weights: NDArray[np.float64]) -> NDArray[np.float32]:
        """∇_x (wᵢᵀ s)(xᵢ) per row, for images [n, C, H, W] and weights [n, K] (rows summing to 0 when
        the output is a Softmax: the gradient graph differentiates the logits)."""
        chunks = self.model.gradient_rows(len(images), lambda a, b: (images[a:b], weights[a:b].astype(np.float32)))
        return np.concatenate([chunk.outputs[INPUT_GRAD] for chunk in chunks])


class Constraints:
    """The ambiguity constraints of each target t: h = s_P − s_Q, and g = [s_P − s_i, s_Q − s_i] (i ∉ {P, Q})."""

    def __init__(self, positives: NDArray[np.intp], contrast: int, classes: int):
        self.positives, self.contrast = positives, contrast
        self.others = np.array([[i for i in range(classes) if i not in (p, contrast)] for p in positives], np.intp)
        self._rows = np.arange(len(positives))[:, None]

    def equality(self, s: NDArray[np.float64]) -> NDArray[np.float64]:
        """h [T]."""
        t = np.arange(len(s))
        return s[t, self.positives] - s[t, self.contrast]

    def inequalities(self, s: NDArray[np.float64]) -> NDArray[np.float64]:
        """g [T, 2 (K − 2)]: P's then Q's margins over every other class (≥ 0 when satisfied)."""
        t = np.arange(len(s))
        others = s[self._rows, self.others]
        return np.concatenate([s[t, self.positives][:, None] - others, s[:, [self.contrast]] - others], axis=1)

    def score_weights(self, s: NDArray[np.float64], lam: NDArray[np.float64], mu: NDArray[np.float64],
                      c: NDArray[np.float64]) -> NDArray[np.float64]:
        """w = ∂L_A/∂s [T, K] at scores s [T, K], multipliers λ [T] and μ [T, 2 (K − 2)], penalties c [T]."""
        t = np.arange(len(s))
        w = np.zeros_like(s)
        pull = lam + c * self.equality(s)
        w[t, self.positives] += pull
        w[t, self.contrast] -= pull
        active = np.maximum(0.0, mu - c[:, None] * self.inequalities(s))  # max(0, μᵢ − c gᵢ): −∂L_A/∂gᵢ
        for_p, for_q = np.split(active, 2, axis=1)  # gᵢ = s_P − s_i, then s_Q − s_i
        w[t, self.positives] -= for_p.sum(axis=1)
        w[t, self.contrast] -= for_q.sum(axis=1)
        w[self._rows, self.others] += for_p + for_q  # the others are distinct in a row, and neither P nor Q
        return w

    def violation(self, s: NDArray[np.float64]) -> NDArray[np.float64]:
        """How much some other class beats P or Q [T] (0 when none does)."""
        g = self.inequalities(s)
        return np.maximum(0.0, -g.min(axis=1)) if g.size else np.zeros(len(s))


def reconstruct(generator: CompanionHandle, x: NDArray[np.float32], z: NDArray[np.float64], steps: int,
                rate: float) -> NDArray[np.float64]:
    """z₀ = argmin ½‖G(z) − x‖² by Adam from ``z`` [T, d]; x [C, H, W]. Gradient J_Gᵀ (G(z) − x)."""
    adam = Adam(z.copy(), rate, low=-np.inf, high=np.inf)
    for _ in range(steps):
        residual = generator.forward(adam.params) - x[None]
        _, gradient = generator.vjp(adam.params, residual)
        adam.step(gradient.astype(np.float64))
    return adam.params


@register(
    "cdeepex",
    family=Family.CONTRASTIVE,
    black_box=False,
    params=CDeepExParams,
    tensor_planes=lambda channels: 2 * channels,  # G(z′) and G(z₀), [C, H, W] each
    citation="Feghahati, Shelton, Pazzani & Tang, CDeepEx: Contrastive Deep Explanations, ECAI 2020",
)
def cdeepex(model: Evaluator, image: NDArray[np.float32], objective: Objective, params: CDeepExParams, *,
            rng) -> Iterator[Event]:
    """Why P and not Q: the nearest latent point whose decoding is ambiguous between P and Q; the map is G(z′) − G(z₀).

    Needs a companion generator (``generator``) and the objective's contrast class Q. Passes: 1 F of the
    classifier at x, then per target (batched over the targets): the encoder's 1 F (when given),
    ``reconstruction_steps`` × (2 F + 1 B) of G, 2 F for G(z₀) and its scores, and ``outer_steps`` ×
    ``inner_steps`` × (4 F + 2 B). Extras (target 0, and ``name[t]`` per target): the classes
    x, G(z₀) and G(z′) are predicted as (``class_input``, ``class_reconstruction``, ``class_contrast``),
    ``score_gap`` |s_P − s_Q| at G(z′), ``score_gap_input`` at x, ``score_gap_reconstruction`` at G(z₀),
    ``score_gap_ratio`` = score_gap / score_gap_input, ``other_class_excess`` (how much another class beats
    P or Q at G(z′)), ``latent_distance`` ‖z′ − z₀‖, ``reconstruction_error`` RMS(G(z₀) − x), ``penalty``
    (the target's final c), ``converged`` (1 when score_gap_ratio ≤ tolerance and no other class exceeds by more than
    tolerance · score_gap_input), ``iterations`` (Adam steps on z′).
    """
    positives, contrast = _contrast_pairs(objective)
    generator = _companion(model, params.generator, "generator")
    encoder = model.companion(params.encoder) if params.encoder else None
    _check_shapes(model, generator, encoder)
    targets, steps = len(positives), params.outer_steps * params.inner_steps
    forward = (1 if encoder else 0) + 2 * params.reconstruction_steps + 2 + 4 * steps
    backward = params.reconstruction_steps + 2 * steps
    planned = Planned(forward=1 + forward * targets, backward=backward * targets)
    yield planned

    scores = Scores(model)
    outputs = scores.outputs(image[None])
    s_input = np.repeat(scores.comparable(outputs), targets, axis=0)
    constraints = Constraints(positives, contrast, outputs.shape[1])
    start = encoder.forward(np.repeat(image[None], targets, axis=0)) if encoder else \
        np.zeros((targets, *generator.input_shape))
    z0 = reconstruct(generator, image, np.asarray(start, np.float64), params.reconstruction_steps,
                     params.reconstruction_rate)
    x0 = generator.forward(z0)
    s0 = scores(x0)

    lam, mu = np.zeros(targets), np.zeros((targets, 2 * constraints.others.shape[1]))
    c = np.full(targets, params.penalty)  # per target: each target's search is independent of the others
    adam = Adam(z0.copy(), params.learning_rate, low=-np.inf, high=np.inf)
    gap = np.abs(constraints.equality(s0))
    decoded, s = x0, s0  # G(z) and its scores at Adam's current z, carried from one step to the next
    for _ in range(params.outer_steps):
        for _step in range(params.inner_steps):
            weights = constraints.score_weights(s, lam, mu, c)
            _, pulled = generator.vjp(adam.params, scores.input_gradient(decoded, weights))
            adam.step((adam.params - z0) + pulled)
            decoded = generator.forward(adam.params)
            s = scores(decoded)
        h = constraints.equality(s)
        lam = lam + c * h
        mu = np.maximum(0.0, mu - c[:, None] * constraints.inequalities(s))
        unsettled = np.abs(h) > params.tolerance * np.abs(constraints.equality(s_input))
        c = np.where(unsettled & (np.abs(h) > gap / SLOW_PROGRESS), c * params.penalty_growth, c)
        gap = np.abs(h)
        yield Progress(done=model.context.forward + model.context.backward, total=planned.total,
                       heatmaps=(decoded - x0).sum(axis=1).astype(np.float32))

    margin_input = np.abs(constraints.equality(s_input))
    excess = constraints.violation(s)
    floor = np.maximum(margin_input, np.finfo(np.float32).tiny)
    per_target = {
        "class_input": s_input.argmax(axis=1), "class_reconstruction": s0.argmax(axis=1),
        "class_contrast": s.argmax(axis=1), "score_gap": gap, "score_gap_input": margin_input,
        "score_gap_reconstruction": np.abs(constraints.equality(s0)), "score_gap_ratio": gap / floor,
        "other_class_excess": excess, "latent_distance": np.linalg.norm((adam.params - z0).reshape(targets, -1), axis=1),
        "reconstruction_error": np.sqrt(np.mean(np.square(x0 - image[None]), axis=(1, 2, 3))),
        "converged": ((gap <= params.tolerance * floor) & (excess <= params.tolerance * floor)).astype(float),
        "penalty": c,
    }
    extras = {"iterations": float(steps)}
    for name, values in per_target.items():
        extras[name] = float(values[0])
        extras.update({f"{name}[{t}]": float(value) for t, value in enumerate(values)})
    yield Explanation(heatmaps=(decoded - x0).sum(axis=1).astype(np.float32),
                      scores=objective(outputs, outputs_are_probabilities=model.outputs_are_probabilities)[0],
                      forward=model.context.forward, backward=model.context.backward, extras=extras,
                      tensors={"contrast_image": decoded.astype(np.float32), "reconstruction": x0.astype(np.float32)})
