"""CEM, the contrastive explanation method (Dhurandhar et al. 2018, [11] in the survey)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..autodiff import INPUT_GRAD, GradientError
from ..autodiff.builder import FINAL_ACTIVATIONS
from ..errors import InvalidArgument, InvalidModel
from ..events import Event, Explanation, Planned, Progress
from ..model import Evaluator
from ..model.companions import CompanionHandle
from ..objectives import Objective
from ..params import MethodParams, param
from ..perturb.fista import Fista
from ..perturb.masks import superpixels as sp
from ..perturb.pertinent import ConstantSearch, Coordinates, Hinge, margin_scores
from .registry import Family, register

MODES = ("both", "pn", "pp")
GRADIENTS = ("auto", "exact", "finite_differences")
PN_DIRECTIONS = ("add", "any")
STREAM_UPDATES = 20  # partial heatmaps streamed per run


@dataclass(frozen=True, kw_only=True)
class CemParams(MethodParams):
    """Defaults: the paper's κ, β, initial c and step size (its MNIST runs); fewer steps than its 9
    searches × 1000 iterations, which cost 9000 F+B per problem."""

    mode: str = param("both", choices=MODES,
                      doc="pn: pertinent negatives; pp: pertinent positives; both (the heatmap is then the PN's)")
    kappa: float = param(0.1, low=0.0, high=1000.0,
                         doc="confidence κ: the logit margin by which a PN must lose the class (a PP keep it)")
    beta: float = param(0.1, low=0.0, high=1000.0, doc="weight β of the L1 term of the elastic net β‖δ‖₁ + ‖δ‖₂²")
    c_init: float = param(10.0, low=1e-6, high=1e6, doc="initial weight c of the hinge, then bisected")
    search_steps: int = param(5, low=1, high=30, doc="bisection steps on c (a FISTA run each)")
    c_batch: int = param(1, low=1, high=16,
                         doc="values of c tried at once per search step, one batch (1: the authors' bisection)")
    iterations: int = param(100, low=1, high=10000, doc="FISTA iterations per search step")
    learning_rate: float = param(0.01, low=1e-6, high=100.0,
                                 doc="initial FISTA step (model-input units), decaying as (1 − k/K)^½")
    pn_direction: str = param("add", choices=PN_DIRECTIONS,
                              doc="add: a PN only raises pixel values, adding what is missing (the paper); any: "
                                  "either sign (gradients only)")
    gradient: str = param("auto", choices=GRADIENTS,
                          doc="auto: exact through the gradient graph when it builds, else finite differences "
                              "over superpixels")
    segments: int = param(50, low=2, high=1000, doc="approximate number of SLIC superpixels (finite differences)")
    compactness: float = param(10.0, low=0.001, high=1000.0, doc="SLIC compactness (finite differences)")
    fd_step: float = param(0.1, low=1e-4, high=1.0,
                           doc="finite-difference step on a superpixel's coefficient (which lives in [0, 1])")
    autoencoder: str = param("", doc="name of an autoencoder companion model x → x̂ for the term γ‖z − AE(z)‖² "
                                     "('' = none; needs gamma > 0)")
    gamma: float = param(0.0, low=0.0, high=1e6,
                         doc="weight γ of the autoencoder term (the paper: 100 on MNIST); > 0 needs autoencoder")

    def check(self) -> None:
        if self.gamma > 0 and not self.autoencoder:
            self.fail("gamma", f"{self.gamma} weighs an autoencoder term; name the autoencoder (params.autoencoder)")
        if self.autoencoder and self.gamma == 0:
            self.fail("autoencoder", f"{self.autoencoder!r} is named but gamma is 0; set gamma > 0 or leave it unset")


@dataclass
class Best:
    """Per row, the feasible point of least elastic net that met the goal (found: False = none yet)."""

    found: NDArray[np.bool_]
    cost: NDArray[np.float64]
    u: NDArray[np.float64]
    scores: NDArray[np.float64]
    c: NDArray[np.float64]
    reconstruction: NDArray[np.float64]

    def chosen(self, per_problem: int) -> NDArray[np.int64]:
        """The best row of each problem [problems] (rows r = problem · per_problem + k): the least cost found."""
        cost = np.where(self.found, self.cost, np.inf).reshape(-1, per_problem)
        return np.arange(len(cost)) * per_problem + cost.argmin(axis=1)

    @classmethod
    def empty(cls, rows: int, d: int, classes: int) -> Best:
        return cls(np.zeros(rows, bool), np.full(rows, np.inf), np.zeros((rows, d)), np.full((rows, classes), np.nan),
                   np.full(rows, np.nan), np.full(rows, np.nan))

    def update(self, reached: NDArray, cost: NDArray, u: NDArray, scores: NDArray, c: NDArray,
               reconstruction: NDArray) -> None:
        better = reached & (cost < self.cost)
        self.found |= better
        for mine, new in ((self.cost, cost), (self.u, u), (self.scores, scores), (self.c, c),
                          (self.reconstruction, reconstruction)):
            mine[better] = new[better]


def contrast_classes(objective: Objective) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Each target's class t and contrast Q (−1 for none): one-hot rows or e_P − e_Q.

    Raises:
        InvalidArgument: a row is neither, or the objective is on probabilities (CEM's hinge is on logits).
    """
    if objective.cross_entropy:
        raise InvalidArgument("target.contrast_loss", "cem's hinge is on the logit margin of t over Q (Dhurandhar "
                                                      "et al. 2018), not a cross-entropy: use contrast_loss=difference")
    if objective.space != "output":
        raise InvalidArgument("target.score_space", "cem's hinge compares logits (Dhurandhar et al. 2018); "
                                                    "leave the score space unset")
    classes, contrast = [], []
    for index, row in enumerate(objective.weights):
        positive, negative = np.flatnonzero(row > 0), np.flatnonzero(row < 0)
        if len(positive) != 1 or row[positive[0]] != 1 or len(negative) > 1 or (len(negative) and row[negative[0]] != -1):
            raise InvalidArgument("target.class_weights", f"row {index}: cem explains one class (a one-hot row) "
                                                          "or a contrast e_P − e_Q")
        classes.append(positive[0])
        contrast.append(negative[0] if len(negative) else -1)
    return np.array(classes, np.int64), np.array(contrast, np.int64)


def autoencoder_of(model: Evaluator, params: CemParams, shape: tuple[int, ...]) -> CompanionHandle | None:
    """The autoencoder companion the parameters name (None: none), checked to map images of ``shape`` to images.

    Raises:
        NotFound: no companion of that name. InvalidArgument: it does not map [C, H, W] to [C, H, W].
    """
    if not params.autoencoder:
        return None
    autoencoder = model.companion(params.autoencoder)
    if autoencoder.input_shape != shape or autoencoder.output_shape != shape:
        raise InvalidArgument("params.autoencoder", f"{params.autoencoder!r} maps {list(autoencoder.input_shape)} to "
                                                    f"{list(autoencoder.output_shape)}; an autoencoder of this model's "
                                                    f"images maps {list(shape)} to {list(shape)}")
    return autoencoder


def wants_exact(model: Evaluator, params: CemParams) -> bool:
    """Whether gradients come from the gradient graph (building it, evaluating nothing)."""
    if params.gradient == "finite_differences":
        return False
    try:
        for _ in model.gradient_rows(0, lambda a, b: (None, None)):
            pass
    except (GradientError, InvalidModel):
        if params.gradient == "exact":
            raise
        return False
    return True


@register(
    "cem",
    family=Family.CONTRASTIVE,
    black_box=True,
    params=CemParams,
    tensor_planes=lambda channels: 2 * channels + 2,  # PN and PP images [C, H, W] and their maps [H, W]
    citation="Dhurandhar, Chen, Luss, Tu, Ting, Shanmugam & Das, Explanations based on the Missing: Towards "
             "Contrastive Explanations with Pertinent Negatives, NeurIPS 2018",
)
def cem(model: Evaluator, image: NDArray[np.float32], objective: Objective, params: CemParams, *, rng) -> Iterator[Event]:
    """Pertinent negatives (what must be added to lose the class) and positives (what part of the image
    alone keeps it), by elastic-net FISTA on the class margin.

    For each target class t, with x the image, b the black image and [lo, hi] the range of a photo's
    pixels in the model's input space (widened to include x):

    * PN (eq. 1): min_δ c · max(0, f_t(x+δ) − max_{i≠t} f_i(x+δ) + κ) + β‖δ‖₁ + ‖δ‖₂² + γ‖z − AE(z)‖²
      with z = x + δ in [lo, hi] and, for ``pn_direction`` add (the paper's "missing features"), δ ≥ 0;
    * PP (eq. 3): the same with max(0, max_{i≠t} f_i(z) − f_t(z) + κ) on the image z = b + p, p
      between 0 and x − b: the part of x kept, the rest black ("absent").

    The autoencoder term (γ > 0) needs an autoencoder companion model of the domain, named by
    ``autoencoder`` (:mod:`explainers.model.companions`): it keeps z close to the data manifold.

    f are the logits (behind a final Softmax, log-probabilities: the same margins). A contrast
    target e_P − e_Q fixes the other class to Q: a PN makes Q beat P, a PP keeps P ahead of Q.
    Each problem is solved by FISTA with the shrinkage-thresholding projection onto the box
    (:mod:`~explainers.perturb.fista`), from δ = 0, for ``iterations`` steps, and c is bisected over
    ``search_steps`` runs as in the authors' code: c halves towards the last failure after a run that
    met the goal, else grows 10× until one does; ``c_batch`` > 1 tries that many values of c at once,
    in the same batches (:class:`~explainers.perturb.pertinent.ConstantSearch`). Every point the gradient is taken at is feasible
    and checked (its scores come with its gradient); the result is the one of least elastic net
    β‖δ‖₁ + ‖δ‖₂² that met the goal, over all runs (as the authors' code keeps it).

    Gradients: exact through the gradient graph, all targets and problems in one batch each step,
    seeded σ(e_t − e_j) with j the runner-up at the previous point (the pass that returns a
    point's gradient also returns its scores; when the runner-up changes, one step follows the
    previous one's margin); or, black-box, forward differences over SLIC superpixels: u_s ∈ [0, 1]
    moves superpixel s towards white (PN, add only) or from black towards x (PP), FISTA preconditioned
    by each superpixel's Σ direction², so a step is the pixel step averaged over the superpixel.

    Result: heatmaps [targets, H, W] = the PN's δ summed over channels (the PP's p for ``mode`` pp);
    tensors ``pertinent_negative`` / ``pertinent_positive`` [targets, C, H, W] (the images x + δ and
    b + p) and their maps ``pertinent_negative_map`` / ``pertinent_positive_map`` [targets, H, W];
    extras per target t: ``pn_found[t]`` (0: none met the goal; its maps are 0), ``pn_class[t]`` (the
    class x + δ is predicted as, −1 when none), ``pn_margin[t]`` (f_t − f_j* there, when found), ``pn_l1[t]``,
    ``pn_l2[t]`` (‖δ‖₁, ‖δ‖₂) and, when found, ``pn_c[t]`` (the c of the run that found it) and
    ``pn_reconstruction[t]`` (‖z − AE(z)‖², with an autoencoder); ``pp_*`` alike.
    Passes: 2 forward (x and b) + search_steps × iterations × problems × c_batch × (1 F + 1 B, or S + 1 F), with
    an autoencoder + (2 F + 1 B of it: AE(z), then its VJP) or + (S + 1) F of it; companion passes count
    as the model's.
    """
    classes, contrast = contrast_classes(objective)
    modes = ("pn", "pp") if params.mode == "both" else (params.mode,)
    targets, num_classes = objective.num_targets, objective.weights.shape[1]
    # problem p: target p // len(modes), modes[p % len(modes)]; row r: problem r // c_batch with its (r % c_batch)-th c
    problems, per_problem = targets * len(modes), params.c_batch
    rows = problems * per_problem
    pn_problem = np.tile([m == "pn" for m in modes], targets)
    is_pn = np.repeat(pn_problem, per_problem)
    hinge = Hinge(np.repeat(classes, len(modes) * per_problem), np.repeat(contrast, len(modes) * per_problem),
                  np.where(is_pn, 1.0, -1.0), params.kappa)

    exact = wants_exact(model, params)
    if not exact and params.pn_direction == "any" and "pn" in modes:
        raise InvalidArgument("params.pn_direction", "'any' needs gradients; finite differences over superpixels "
                                                     "support 'add' (or use a model the gradient graph supports)")
    autoencoder = autoencoder_of(model, params, image.shape)
    black, white = model.black_image(), model.white_image()
    low, high = np.minimum(black, image), np.maximum(white, image)
    present = image - black
    base = np.where(is_pn[:, None, None, None], image[None], black[None]).astype(np.float32)
    if exact:
        pn_low = np.zeros_like(image) if params.pn_direction == "add" else low - image
        lower = np.where(is_pn[:, None, None, None], pn_low[None], np.minimum(present, 0)[None])
        upper = np.where(is_pn[:, None, None, None], (high - image)[None], np.maximum(present, 0)[None])
        space = Coordinates.pixels(base, lower, upper)
        per_step = (rows * (3 if autoencoder else 1), rows * (2 if autoencoder else 1))  # AE: forward, then VJP
    else:
        segments = sp.slic_segments(image, params.segments, params.compactness)
        direction = np.where(is_pn[:, None, None, None], (high - image)[None], present[None])
        space = Coordinates.superpixels(base, direction, segments)
        per_step = (rows * (space.lower.shape[1] + 1) * (2 if autoencoder else 1), 0)
    d = space.lower.shape[1]
    steps = params.search_steps * params.iterations
    yield Planned(forward=2 + steps * per_step[0], backward=steps * per_step[1])
    total = 2 + steps * sum(per_step)

    cut = model.signature.output_producer if model.signature.output_producer in FINAL_ACTIVATIONS else None
    everything = Objective(np.eye(num_classes, dtype=np.float32), tuple(range(num_classes)))
    start = np.concatenate([values for _, _, values in
                            model.objective_values(2, lambda a, b: np.stack([image, black])[a:b], everything)])
    scores = objective(start[:1], outputs_are_probabilities=model.outputs_are_probabilities)[0]
    start_runner_up = hinge.runner_up(margin_scores(start[np.where(is_pn, 0, 1)], cut))

    def reconstruction(images: NDArray) -> tuple[NDArray, NDArray]:
        """(‖z − AE(z)‖² [n], z − AE(z) [n, C, H, W]) for images z (zeros without an autoencoder)."""
        if autoencoder is None:
            return np.zeros(len(images)), np.zeros_like(images)
        residual = images - autoencoder.forward(images)
        return np.square(residual, dtype=np.float64).reshape(len(images), -1).sum(axis=1), residual

    def evaluate_gradients(point: NDArray, runner_up: NDArray, c: NDArray) -> tuple[NDArray, NDArray, NDArray]:
        """(margin scores at ``point`` [R, K], ‖z − AE(z)‖² [R], ∇_u (c·hinge + γ‖z − AE(z)‖²) [R, d]) through
        the gradient graph (and the autoencoder's: ∇_z ‖z − AE(z)‖² = 2 (r − J_AEᵀ r), r = z − AE(z))."""
        images, seeds = space.images(point, np.arange(rows)), hinge.seeds(runner_up, num_classes)
        outputs, grads = np.empty((rows, num_classes)), np.empty(images.shape, np.float32)
        for chunk in model.gradient_rows(rows, lambda a, b: (images[a:b], seeds[a:b])):
            outputs[chunk.start:chunk.stop] = chunk.outputs[model.signature.output_name]
            grads[chunk.start:chunk.stop] = chunk.outputs[INPUT_GRAD]
        at = margin_scores(outputs, cut)
        active = hinge.loss(at) > 0
        gradient = (c * active)[:, None] * space.to_variables(grads)
        error, residual = reconstruction(images)
        if autoencoder is not None:
            _, pulled = autoencoder.vjp(images, residual)
            gradient += 2 * params.gamma * space.to_variables(residual - pulled)
        return at, error, gradient

    def evaluate_differences(point: NDArray, c: NDArray) -> tuple[NDArray, NDArray, NDArray]:
        """(margin scores at ``point`` [R, K], ‖z − AE(z)‖² [R], forward differences of
        c·hinge + γ‖z − AE(z)‖² [R, S]) over superpixels."""
        step = np.where(point + params.fd_step <= space.upper, params.fd_step, -params.fd_step)  # stay in [0, 1]
        probes = np.repeat(point[:, None], d + 1, axis=1)  # probe 0 of a row is the point itself
        probes[:, 1:][:, np.arange(d), np.arange(d)] += step
        flat, row_of = probes.reshape(-1, d), np.repeat(np.arange(rows), d + 1)
        outputs = np.empty((len(flat), num_classes))
        for a, b, values in model.objective_values(len(flat), lambda a, b: space.images(flat[a:b], row_of[a:b]),
                                                   everything):
            outputs[a:b] = values
        at = margin_scores(outputs, cut)
        error = reconstruction(space.images(flat, row_of))[0] if autoencoder else np.zeros(len(flat))
        loss = (c[row_of] * hinge.take(row_of).loss(at) + params.gamma * error).reshape(rows, d + 1)
        return at.reshape(rows, d + 1, -1)[:, 0], error.reshape(rows, d + 1)[:, 0], (loss[:, 1:] - loss[:, :1]) / step

    best = Best.empty(rows, d, num_classes)
    search = ConstantSearch(problems, per_problem, params.c_init)
    every, done = max(1, -(-steps // STREAM_UPDATES)), 2
    for step in range(params.search_steps):
        c = search.values.ravel()
        fista = Fista(space.lower, space.upper, beta=params.beta, learning_rate=params.learning_rate,
                      iterations=params.iterations, l1_weights=space.l1_weights, metric=space.metric)
        runner_up, succeeded = start_runner_up, np.zeros(rows, bool)
        for iteration in range(params.iterations):
            point = fista.point
            if exact:
                at, error, gradient = evaluate_gradients(point, runner_up, c)
                runner_up = hinge.runner_up(at)
            else:
                at, error, gradient = evaluate_differences(point, c)
            reached = hinge.reached(at)
            succeeded |= reached
            best.update(reached, space.elastic_net(point, params.beta)[0], point, at, c, error)
            fista.step(gradient + space.l2_gradient(point))
            done += sum(per_step)
            count = step * params.iterations + iteration + 1
            partial = maps(space, best, per_problem, pn_problem, modes)[0] if count % every == 0 and count < steps \
                else None
            yield Progress(done=done, total=total, heatmaps=partial)
        search.update(c.reshape(problems, per_problem), succeeded.reshape(problems, per_problem))

    heatmaps, tensors = maps(space, best, per_problem, pn_problem, modes)
    yield Progress(done=total, total=total, heatmaps=heatmaps)
    extras = {"exact_gradient": float(exact), "iterations": float(params.iterations),
              "search_steps": float(params.search_steps)}
    if not exact:
        extras["segments"] = float(d)
    _, l1, l2 = space.elastic_net(best.u, params.beta)
    for p, r in enumerate(best.chosen(per_problem)):
        prefix, t = ("pn" if is_pn[r] else "pp"), p // len(modes)
        found = bool(best.found[r])
        extras[f"{prefix}_found[{t}]"] = float(found)
        extras[f"{prefix}_class[{t}]"] = float(best.scores[r].argmax()) if found else -1.0
        extras[f"{prefix}_l1[{t}]"], extras[f"{prefix}_l2[{t}]"] = float(l1[r]), float(l2[r])
        if found:
            extras[f"{prefix}_margin[{t}]"] = float(hinge.take(np.array([r])).margin(best.scores[r:r + 1])[0])
            extras[f"{prefix}_c[{t}]"] = float(best.c[r])
            if autoencoder is not None:
                extras[f"{prefix}_reconstruction[{t}]"] = float(best.reconstruction[r])
    yield Explanation(heatmaps=heatmaps, scores=scores, forward=model.context.forward,
                      backward=model.context.backward, extras=extras, tensors=tensors)


def maps(space: Coordinates, best: Best, per_problem: int, pn_problem: NDArray, modes: tuple[str, ...]
         ) -> tuple[NDArray[np.float32], dict[str, NDArray[np.float32]]]:
    """(heatmaps [T, H, W], tensors by name) of each problem's best point so far (none found: δ = 0)."""
    rows = best.chosen(per_problem)
    u = np.where(best.found[rows, None], best.u[rows], 0.0)
    deltas, images = space.deltas(u, rows), space.images(u, rows)
    tensors = {}
    for mode, name in (("pn", "pertinent_negative"), ("pp", "pertinent_positive")):
        if mode in modes:
            mine = pn_problem if mode == "pn" else ~pn_problem
            tensors[name] = images[mine]
            tensors[f"{name}_map"] = deltas[mine].sum(axis=1)
    heatmaps = tensors["pertinent_negative_map" if "pn" in modes else "pertinent_positive_map"]
    return heatmaps.astype(np.float32), tensors
