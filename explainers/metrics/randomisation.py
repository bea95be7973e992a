"""Model-parameter randomisation tests (Adebayo et al. 2018, "Sanity Checks for Saliency Maps",
NeurIPS, §3.1): does the map depend on what the model learned?

If an explanation is faithful to the model, destroying the model's learned parameters must change
it. The test re-initialises the parametrised layers of the ONNX graph
(:mod:`explainers.graph.randomise`: Conv/ConvTranspose/Gemm/MatMul weights and biases, the γ/β of
Batch/Layer/InstanceNormalization), recomputes the map with the same method, parameters, objective and seed on a classifier
built from the rewritten graph (same config and preprocessing), and compares it with the original
map by the four measures of :mod:`.similarity` (Spearman ρ with and without absolute values, SSIM,
HOG similarity).

* ``sanity_cascading``: randomise from the top (logits) layer down, cumulatively. With L layers
  and ``steps`` = K, step k randomises the top ``spread(L, K)[k] + 1`` layers: the first step the
  logits layer alone, the last the whole model. x = layers randomised, ticks = the deepest one.
  **Value**: Spearman ρ of |maps| after the last step (the fully randomised model).
* ``sanity_independent``: randomise one layer at a time, the rest intact, at K layers evenly
  spaced from the top down. x = the layer's position from the top, ticks = its name.
  **Value**: the mean over the K steps of Spearman ρ of |maps|.

``layers`` names the steps instead (each a parametrised layer; a cascade then stops at the deepest
named one, so its value is the ρ after that layer rather than after the whole model).

Extras: ``mean_spearman_abs`` (the Spearman ρ of |maps| averaged over the steps and targets: how
long the map survives the cascade), the number of parametrised ``layers`` and of ``steps``,
``constant_maps`` (target × step pairs where a map was constant; its correlations count as 0) and
the ``randomisation_seed`` drawn from the request's seed.

**Direction.** Lower is better (``higher_is_better=False``): a map that stays similar to the
original after the model's parameters are random cannot be explaining what the model learned
(the paper's finding for Guided Backprop and Guided Grad-CAM, which behave like edge detectors),
while gradients and Grad-CAM decorrelate (ρ towards 0). Values near 0 pass; the curve shows at
which depth the map stopped depending on the parameters.

**Out of scope: the data randomisation test** (the paper's §3.2: retrain on permuted labels) needs
retraining the model, so it is not a per-request metric.

Cost: K re-explanations, each on a classifier compiled from the rewritten graph; each derived
classifier owns its session pool (nothing is added to the request's classifier's cache) and is
dropped after its step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import FailedPrecondition, InvalidArgument, listing, shorten
from ..events import Planned, Progress
from ..graph.randomise import ParametrisedLayer, parametrised_layers, randomised, spread, top_down
from ..model import OnnxClassifier
from ..params import param
from .derived import require_local_graph
from .registry import MetricParams, PlanInput, register_metric
from .result import Curve, MetricResult
from .similarity import MEASURES, similarities
from .subject import Subject

CITATION = "Adebayo et al. 2018, Sanity Checks for Saliency Maps (NeurIPS), §3.1 model parameter randomisation"
HEADLINE = "spearman_abs"


@dataclass(frozen=True, kw_only=True)
class RandomisationParams(MetricParams):
    steps: int = param(6, low=1, high=512,
                       doc="how many randomisation steps (each re-runs the method): evenly spaced over the "
                           "parametrised layers from the logits down; more than the model has = one per layer")
    layers: str = param("", doc="instead of evenly spaced steps: comma-separated names of parametrised layers, one "
                                "step each (cascading: randomise from the logits down to that layer; independent: "
                                "that layer alone); empty = use steps")


def step_positions(params: RandomisationParams, layers: list[ParametrisedLayer]) -> list[int]:
    """The positions (in ``layers``, top-down) of the steps: the named ``params.layers``, else
    ``params.steps`` evenly spaced.

    Raises:
        InvalidArgument: a name that is not a parametrised layer (the message lists them).
    """
    if not params.layers:
        return spread(len(layers), params.steps)
    position = {layer.name: k for k, layer in enumerate(layers)}
    names = [name.strip() for name in params.layers.split(",") if name.strip()]
    unknown = [name for name in names if name not in position]
    if unknown or not names:
        raise InvalidArgument(f"{MetricParams.field_prefix}.layers",
                              f"{shorten(unknown[0]) if unknown else 'no name'} is not a parametrised layer; "
                              f"allowed: {listing(list(position))}")
    return sorted({position[name] for name in names})


def model_layers(classifier: OnnxClassifier) -> list[ParametrisedLayer]:
    """The parametrised layers of ``classifier``'s graph, from the logits down.

    Raises:
        FailedPrecondition: the model is served remotely (no graph to rewrite) or has no
            parametrised layer on its input → output path.
    """
    require_local_graph(classifier, "randomising its weights")
    layers = parametrised_layers(classifier.model, classifier.signature.input_name, classifier.signature.output_name)
    if not layers:
        raise FailedPrecondition(f"model {classifier.name!r} has no layer with learned weights in initializers "
                                 "(Conv, ConvTranspose, Gemm, MatMul, normalisation γ/β) to randomise")
    return top_down(layers)


def _plan(params: RandomisationParams, given: PlanInput) -> Planned:
    steps = len(step_positions(params, model_layers(given.classifier)))
    return Planned(forward=steps * given.method_planned.forward, backward=steps * given.method_planned.backward)


def _randomisation(subject: Subject, params: RandomisationParams, rng: np.random.Generator, *, cascading: bool,
                   metric: str) -> Iterator[Planned | Progress | MetricResult]:
    """Re-explain after each step, compare with the original map; see the module docstring."""
    layers = model_layers(subject.classifier)
    positions = step_positions(params, layers)
    once = subject.explanation  # what one re-explanation costs (the original run's passes)
    yield Planned(forward=len(positions) * once.forward, backward=len(positions) * once.backward)
    seed = int(rng.integers(2**31))
    curves: dict[str, list] = {name: [] for name in MEASURES}
    constant = 0
    for done, position in enumerate(positions, 1):
        subject.model.context.check()  # a cancelled request stops before compiling the next model
        chosen = layers[: position + 1] if cascading else [layers[position]]
        derived = subject.classifier.derived(randomised(subject.classifier.model, chosen, seed=seed),
                                             name=f"{subject.classifier.name} (randomised {layers[position].name})",
                                             same_tensors=True)
        try:
            heatmaps = subject.reexplain_once(classifier=derived).heatmaps
        finally:
            del derived  # its sessions go with it: the next step compiles its own
        measured, step_constant = similarities(subject.heatmaps, heatmaps)
        constant += step_constant
        for name in MEASURES:
            curves[name].append(measured[name])
        yield Progress(done=done, total=len(positions))
    x = np.asarray([p + 1 for p in positions], np.float32)
    x_label = "layers randomised (top down)" if cascading else "layer randomised (position from the top)"
    ticks = tuple(layers[p].name for p in positions)
    result_curves = tuple(Curve(name, x, np.stack(curves[name], axis=1), x_label, ticks, y_label=_Y_LABELS[name])
                          for name in MEASURES)
    headline = np.stack(curves[HEADLINE], axis=1)  # [T, K]
    values = headline[:, -1] if cascading else headline.mean(axis=1)
    yield MetricResult(metric, values.astype(np.float32), False, result_curves,
                       extras={"mean_spearman_abs": float(headline.mean()),
                               "layers": float(len(layers)), "steps": float(len(positions)),
                               "constant_maps": float(constant), "randomisation_seed": float(seed)})


_Y_LABELS = {"spearman": "Spearman rank correlation with the original map",
             "spearman_abs": "Spearman rank correlation of |map| with the original |map|",
             "ssim": "SSIM with the original map (|map| scaled to [0, 1])",
             "hog": "Pearson correlation of HOG features with the original map's"}


@register_metric("sanity_cascading", params=RandomisationParams, higher_is_better=False, citation=CITATION,
                 reexplains=True, plan=_plan)
def sanity_cascading(subject: Subject, params: RandomisationParams, *, rng: np.random.Generator
                     ) -> Iterator[Planned | Progress | MetricResult]:
    """Cascading weight randomisation, logits down (Adebayo 2018): Spearman ρ of |map| vs the original, whole model random.

    Lower = the map depends on the learned weights. Curves: Spearman ρ with and without |·|, SSIM
    and HOG similarity per step. Data randomisation (retraining on permuted labels) is out of scope.
    """
    return _randomisation(subject, params, rng, cascading=True, metric="sanity_cascading")


@register_metric("sanity_independent", params=RandomisationParams, higher_is_better=False, citation=CITATION,
                 reexplains=True, plan=_plan)
def sanity_independent(subject: Subject, params: RandomisationParams, *, rng: np.random.Generator
                       ) -> Iterator[Planned | Progress | MetricResult]:
    """Independent weight randomisation, one layer at a time (Adebayo 2018): mean Spearman ρ of |map| vs the original.

    Lower = the map depends on each layer's weights. Curves: Spearman ρ with and without |·|, SSIM
    and HOG similarity per layer. Data randomisation (retraining on permuted labels) is out of scope.
    """
    return _randomisation(subject, params, rng, cascading=False, metric="sanity_independent")
