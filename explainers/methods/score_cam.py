"""Score-CAM (Wang et al. 2020, [66] in the survey)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

from ..events import Event, Explanation, Planned, Progress
from ..model import Evaluator
from ..objectives import Objective, softmax
from ..perturb.masks.upsampled import upsampled_masks
from .cam_base import LayerParams, class_activation_maps, resolve_layer
from .registry import Family, register


@register(
    "score_cam",
    family=Family.PERTURBATION,
    black_box=True,
    params=LayerParams,
    citation="Wang et al., Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks, "
    "CVPR Workshops 2020",
)
def score_cam(
    model: Evaluator, image: NDArray[np.float32], objective: Objective, params: LayerParams, *, rng
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

    Raises:
        NotFound: ``params.layer`` is not a 4-D activation (the message lists those that are).
        FailedPrecondition: the model has no 4-D activation at all.
    """
    layer = resolve_layer(model.introspection, params.layer)
    channels, low_height, low_width = next(lay.shape for lay in model.introspection.layers() if lay.name == layer)
    _, height, width = image.shape
    total = channels + 1
    yield Planned(forward=total)

    exposed = model.layer_activations(image[None], [layer])
    scores = objective(exposed[model.signature.output_name],
                       outputs_are_probabilities=model.outputs_are_probabilities)[0]
    maps = exposed[layer][0].astype(np.float32)  # [K, h, w]
    yield Progress(done=1, total=total)
    # exactly constant channels are fed as zeros, whose upsampled copy is exactly 0 (→ an all-zero
    # mask); a constant c ≠ 0 would come out of the resize with 1-ulp ripples that min-max scaling
    # blows up into a random mask
    constant = np.ptp(maps.reshape(channels, -1), axis=1) == 0
    low_masks = np.where(constant[:, None, None], 0, maps)[:, None]  # [K, 1, h, w]
    values = np.empty((channels, objective.num_targets), np.float32)
    for start, stop, chunk in model.perturbed_values(
        channels, lambda a, b: {"low_masks": low_masks[a:b]}, objective,
        source=upsampled_masks(height, width, low_height, low_width, normalise=True, align_corners=True), image=image,
        baseline=np.zeros_like(image),
    ):
        values[start:stop] = chunk
        yield Progress(done=stop + 1, total=total, heatmaps=_heatmaps(maps[:stop], values[:stop], (height, width)))
    yield Explanation(heatmaps=_heatmaps(maps, values, (height, width)), scores=scores,
                      forward=model.context.forward, extras={"bytes_per_sample": model.context.bytes_fed / total})


def _heatmaps(maps: NDArray[np.float32], values: NDArray[np.float32], size: tuple[int, int]) -> NDArray[np.float32]:
    """Maps [k, h, w] and their masked scores [k, T] → [T, H, W], weighted by a softmax over the k channels."""
    return class_activation_maps(maps, softmax(values.astype(np.float64).T, axis=1), size)
