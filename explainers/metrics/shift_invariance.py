"""Input-shift invariance (Kindermans et al. 2019, "The (Un)reliability of Saliency Methods", in
Explainable AI: Interpreting, Explaining and Visualizing Deep Learning, LNCS 11700, §2–3).

Two models that compute the same function of their data should get the same explanation. The test
builds g with g(x + c) = f(x) by a graph rewrite (:mod:`explainers.graph.input_shift`: c folded
into the first layer's bias where that is exact — a Conv without padding, a Gemm/MatMul on the
flattened input — else a ``Sub(x, c)`` node prepended), checks on the real scores that
max |g(x + c) − f(x)| ≤ ``tolerance`` · (1 + max |f(x)|), and explains g at x + c with the SAME
method parameters. A reference that moves with the data (a gradient, or a baseline defined by the
data) gives the same map; a fixed reference does not: Integrated Gradients and DeepLIFT with a
black or zero baseline now integrate from a point that is a different input *to the function*
(x′ − c in f's terms), so their maps change (the paper's finding). That is the point of the test:
the baseline is deliberately not shifted.

**Value** per target: the relative L2 change of the map, ‖m′ − m‖₂ / (‖m‖₂ + ‖m′‖₂), in [0, 1]
(0 = identical, 1 = m′ = −m or one map zero; 0 when both are zero). Lower is better: a method
passes when the value is ~0 (float rounding). Extras: the mean Spearman ρ of the maps (signed and
|·|), the largest score change of the rewrite, and ``compensation_in_bias`` (1: folded into the
first layer's bias; 0: a compensating node was prepended).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..errors import FailedPrecondition, InvalidArgument
from ..events import Planned, Progress
from ..graph.input_shift import shift_compensated
from ..model import OnnxClassifier
from ..params import param
from .derived import require_local_graph
from .registry import MetricParams, PlanInput, register_metric
from .result import MetricResult
from .similarity import rank_correlation
from .subject import Subject

CITATION = "Kindermans et al. 2019, The (Un)reliability of Saliency Methods (LNCS 11700), input invariance"
_FLOAT_INPUTS = ("FP32", "FP64", "FP16")


@dataclass(frozen=True, kw_only=True)
class ShiftParams(MetricParams):
    shift: tuple[float, ...] = param(
        (1.0,), low=-1e3, high=1e3,
        doc="c added to the model input (after preprocessing, in model-input units): one value for every "
            "channel, or one per channel")
    tolerance: float = param(
        1e-3, low=0.0, high=1.0,
        doc="the largest allowed score change of the compensated model, relative to 1 + max |f(x)|: the "
            "check that the rewrite kept the model's outputs")

    def check(self) -> None:
        if not any(self.shift):
            self.fail("shift", "all zero; a shift must move the input (allowed: any non-zero value)")


def per_channel_shift(params: ShiftParams, classifier: OnnxClassifier) -> NDArray[np.float64]:
    """c [C] for ``classifier``'s input.

    Raises:
        InvalidArgument: neither one value nor one per channel. FailedPrecondition: a remote model,
            or an integer input (a shift of it cannot be compensated exactly).
    """
    require_local_graph(classifier, "compensating the shift in the first layer")
    if classifier.signature.input_datatype not in _FLOAT_INPUTS:
        raise FailedPrecondition(f"model {classifier.name!r} reads {classifier.signature.input_datatype} pixels: "
                                 "a shifted input cannot be compensated exactly; allowed: float inputs")
    if len(params.shift) not in (1, classifier.channels):
        raise InvalidArgument(f"{MetricParams.field_prefix}.shift",
                              f"{len(params.shift)} values; allowed: 1 or {classifier.channels} (one per channel)")
    return np.broadcast_to(np.asarray(params.shift, np.float64), (classifier.channels,)).copy()


def _plan(params: ShiftParams, given: PlanInput) -> Planned:
    per_channel_shift(params, given.classifier)
    return Planned(forward=given.method_planned.forward + 2, backward=given.method_planned.backward)


def relative_change(original: NDArray[np.floating], other: NDArray[np.floating]) -> NDArray[np.float32]:
    """‖m′ − m‖₂ / (‖m‖₂ + ‖m′‖₂) per target of maps [T, H, W] → [T] (0 when both are zero)."""
    a, b = original.reshape(len(original), -1).astype(np.float64), other.reshape(len(other), -1).astype(np.float64)
    scale = np.linalg.norm(a, axis=1) + np.linalg.norm(b, axis=1)
    change = np.linalg.norm(b - a, axis=1)
    return np.divide(change, scale, out=np.zeros_like(change), where=scale > 0).astype(np.float32)


@register_metric("input_shift_invariance", params=ShiftParams, higher_is_better=False, citation=CITATION,
                 reexplains=True, plan=_plan)
def input_shift_invariance(subject: Subject, params: ShiftParams, *, rng: np.random.Generator
                           ) -> Iterator[Planned | Progress | MetricResult]:
    """Input-shift invariance (Kindermans 2019): relative L2 change of the map for x + c on a model compensating c.

    The compensated model gives x + c the original outputs (checked); ~0 passes (gradients), a
    fixed baseline fails (Integrated Gradients / DeepLIFT with a black or zero baseline).
    """
    classifier = subject.classifier
    c = per_channel_shift(params, classifier)
    once = subject.explanation
    yield Planned(forward=once.forward + 2, backward=once.backward)
    subject.model.context.check()
    rewrite = shift_compensated(classifier.model, classifier.signature.input_name, c, layout=classifier.signature.layout)
    shifted = classifier.derived(rewrite.model, name=f"{classifier.name} (input shifted)")
    shifted_image = (subject.image + c[:, None, None]).astype(np.float32)
    context = subject.model.context
    before = classifier.predict(subject.image[None], context=context)
    after = shifted.predict(shifted_image[None], context=context)
    score_change = float(np.abs(after.astype(np.float64) - before).max())
    allowed = params.tolerance * (1.0 + float(np.abs(before).max()))
    if score_change > allowed:
        raise FailedPrecondition(
            f"the shift-compensated model's scores differ from the original's by {score_change:.3g} (allowed "
            f"{allowed:.3g}): the rewrite ({'bias of ' if rewrite.folded else 'node '}{rewrite.layer}) does not "
            "preserve this model's outputs")
    yield Progress(done=1, total=2)
    heatmaps = subject.reexplain_once(image=shifted_image, classifier=shifted).heatmaps
    del shifted
    yield Progress(done=2, total=2)
    original = subject.heatmaps
    pairs = list(zip(original, heatmaps))
    yield MetricResult(
        "input_shift_invariance", relative_change(original, heatmaps), False,
        extras={"spearman": float(np.mean([rank_correlation(a, b) for a, b in pairs])),
                "spearman_abs": float(np.mean([rank_correlation(np.abs(a), np.abs(b)) for a, b in pairs])),
                "max_score_change": score_change, "shift_mean": float(c.mean()),
                "compensation_in_bias": float(rewrite.folded)})
