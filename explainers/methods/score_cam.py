"""Score-CAM (Wang et al. 2020, [66] in the survey)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..events import Event, Explanation, Planned, Progress
from ..model import Evaluator
from ..objectives import Objective, softmax
from ..params import param
from ..perturb.masks.upsampled import upsampled_masks
from .cam_base import LayerParams, class_activation_maps, resolve_layer
from .registry import Family, register


@dataclass(frozen=True, kw_only=True)
class ScoreCamParams(LayerParams):
    """The layer, and the faster modes (each off by default: the paper's and pytorch-grad-cam's K + 1 passes)."""

    skip_constant: bool = param(False, doc="score the all-zero mask of constant channels once and share it "
                                "(every constant channel masks the whole image out): the same map, fewer passes")
    constant_tolerance: float = param(
        0.0, low=0.0, high=1.0, doc="with skip_constant: a channel whose range max − min is at most this × the "
        "largest channel range also counts as constant (an approximation; 0 = exactly constant only)")
    top_channels: int = param(0, low=0, high=1_000_000, doc="score only the k channels of largest activation "
                              "mass Σ A (the others leave the weighted sum and the softmax); 0 = every channel")


@dataclass(frozen=True)
class ChannelPlan:
    """Which masks Score-CAM feeds: ``shared`` (one all-zero mask first, scored once for the
    ``constant`` channels [c]), then one per channel of ``scored`` [s] (indices into the K maps)."""

    constant: NDArray[np.int64]
    scored: NDArray[np.int64]

    @property
    def shared(self) -> bool:
        return len(self.constant) > 0

    @classmethod
    def choose(cls, maps: NDArray[np.float32], params: ScoreCamParams) -> ChannelPlan:
        """From the maps [K, h, w]: without options every channel is scored (constant ones with the
        all-zero mask); ``skip_constant`` moves the constant ones (range ≤ tolerance × largest range) to the
        shared mask; ``top_channels`` keeps the k others of largest Σ A, in channel order."""
        flat = maps.reshape(len(maps), -1)
        ranges = np.ptp(flat, axis=1)
        if params.skip_constant:
            constant = ranges <= params.constant_tolerance * ranges.max()
        else:
            constant = np.zeros(len(maps), bool)
        scored = np.flatnonzero(~constant)
        if 0 < params.top_channels < len(scored):
            mass = flat[scored].sum(axis=1, dtype=np.float64)
            scored = np.sort(scored[np.argsort(-mass, kind="stable")[: params.top_channels]])
        return cls(np.flatnonzero(constant), scored)

    def low_masks(self, maps: NDArray[np.float32]) -> NDArray[np.float32]:
        """The fed low-resolution masks [n, 1, h, w]: the shared zero mask, then the scored maps, with
        exactly constant ones as zeros — a constant c ≠ 0 would come out of the resize with 1-ulp
        ripples that min-max scaling blows up into a random mask."""
        chosen = maps[self.scored]
        exact = np.ptp(chosen.reshape(len(chosen), -1), axis=1) == 0
        chosen = np.where(exact[:, None, None], 0, chosen)
        zero = np.zeros((int(self.shared), *maps.shape[1:]), np.float32)
        return np.concatenate([zero, chosen])[:, None]

    def channels_after(self, fed: int) -> NDArray[np.int64]:
        """The channels [k] whose score is known once ``fed`` masks were scored (in feed order)."""
        if not self.shared:
            return self.scored[:fed]
        return np.concatenate([self.constant, self.scored[: fed - 1]]) if fed else self.scored[:0]

    def values_after(self, fed_values: NDArray[np.float32]) -> NDArray[np.float32]:
        """Each known channel's score [k, T] from the scores [fed, T] of the masks fed so far."""
        if not self.shared or not len(fed_values):
            return fed_values
        return np.concatenate([np.repeat(fed_values[:1], len(self.constant), axis=0), fed_values[1:]])


@register(
    "score_cam",
    family=Family.PERTURBATION,
    black_box=True,
    params=ScoreCamParams,
    citation="Wang et al., Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks, "
    "CVPR Workshops 2020",
)
def score_cam(
    model: Evaluator, image: NDArray[np.float32], objective: Objective, params: ScoreCamParams, *, rng
) -> Iterator[Event]:
    """ReLU(Σₖ wₖ Aₖ) upsampled, w = softmax over the channels k of the score of x ⊙ norm(up(Aₖ)).

    Passes: K + 1 forward: one exposes the layer's K maps Aₖ [h, w] (and scores x), then the K masked
    copies are built in the graph from the maps themselves. As in pytorch-grad-cam's ``ScoreCAM``:
    masks are resized with ``align_corners=True`` (torch ``UpsamplingBilinear2d``) and min-max
    normalised, the rest of the image becomes 0, a constant channel masks everything out (score of
    an all-zero input, still in the softmax), the weights are a softmax of the raw target scores (the
    paper subtracts a baseline score: softmax is shift-invariant), and the map is resized with
    half-pixel centres (cv2) but returned in input units, not min-max normalised. Every target
    shares the passes; partial maps use the channels scored so far.

    Faster modes (:class:`ScoreCamParams`; the plan counts K + 1, fewer are used): ``skip_constant``
    scores the all-zero mask once for every constant channel — the same map (up to float rounding)
    with c − 1 fewer passes for c constant channels; on EfficientNet-Lite0's last ReLU6 layer 732 of
    1280 channels are all zero on skimage's coffee photo. ``constant_tolerance`` extends that to
    near-constant channels, and ``top_channels`` keeps the k channels of largest activation mass:
    both approximate, measured by their map's correlation with the full run in ``bench/run.py``.
    Extras: ``channels_scored`` (masks fed), ``channels_used`` (channels in the map).

    Raises:
        NotFound: ``params.layer`` is not a 4-D activation (the message lists those that are).
        FailedPrecondition: the model has no 4-D activation at all.
    """
    layer = resolve_layer(model.introspection, params.layer)
    channels = next(lay.shape for lay in model.introspection.layers() if lay.name == layer)[0]
    _, height, width = image.shape
    total = channels + 1
    yield Planned(forward=total)

    exposed = model.layer_activations(image[None], [layer])
    scores = objective(exposed[model.signature.output_name],
                       outputs_are_probabilities=model.outputs_are_probabilities)[0]
    maps = exposed[layer][0].astype(np.float32)  # [K, h, w]
    low_height, low_width = maps.shape[1:]
    yield Progress(done=1, total=total)
    plan = ChannelPlan.choose(maps, params)
    low_masks = plan.low_masks(maps)  # [n, 1, h, w]
    fed = np.empty((len(low_masks), objective.num_targets), np.float32)
    for start, stop, chunk in model.perturbed_values(
        len(low_masks), lambda a, b: {"low_masks": low_masks[a:b]}, objective,
        source=upsampled_masks(height, width, low_height, low_width, normalise=True, align_corners=True), image=image,
        baseline=np.zeros_like(image),
    ):
        fed[start:stop] = chunk
        known = plan.channels_after(stop)
        yield Progress(done=stop + 1, total=total,
                       heatmaps=_heatmaps(maps[known], plan.values_after(fed[:stop]), (height, width)))
    known = plan.channels_after(len(low_masks))
    yield Explanation(heatmaps=_heatmaps(maps[known], plan.values_after(fed), (height, width)), scores=scores,
                      forward=model.context.forward,
                      extras={"bytes_per_sample": model.context.bytes_fed / model.context.forward,
                              "channels_scored": float(len(low_masks)), "channels_used": float(len(known))})


def _heatmaps(maps: NDArray[np.float32], values: NDArray[np.float32], size: tuple[int, int]) -> NDArray[np.float32]:
    """Maps [k, h, w] and their masked scores [k, T] → [T, H, W], weighted by a softmax over the k channels."""
    return class_activation_maps(maps, softmax(values.astype(np.float64).T, axis=1), size)
