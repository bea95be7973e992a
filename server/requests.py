"""Turn request messages into library inputs: images, objectives, parameters.

Everything here is synchronous and runs on a worker thread (decoding and preprocessing an image
is real work). Every failure is an :class:`~explainers.errors.InvalidArgument` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from onnxplain.explainers import Objective, OnnxClassifier, RunContext, top_classes
from onnxplain.explainers.errors import InvalidArgument
from onnxplain.explainers.model import Geometry, canonical_tensor, decode_image, preprocess, to_rgb_array
from onnxplain.explainers.objectives import CROSS_ENTROPY, DIFFERENCE
from onnxplain.explainers.render import canvas_from_tensor
from onnxplain.v1 import explanation_service_pb2 as ex_pb2
from onnxplain.v1 import tensor_pb2
from onnxplain.v1.wire import from_tensor


@dataclass(frozen=True)
class PreparedImage:
    """``tensor`` canonical [C, H, W]; ``geometry``/``original`` only for encoded images."""

    tensor: NDArray[np.float32]
    geometry: Geometry | None
    original: NDArray[np.uint8] | None

    @property
    def canvas(self) -> NDArray[np.uint8]:
        """What overlays are drawn on: the original image, or a picture of the tensor."""
        return self.original if self.original is not None else canvas_from_tensor(self.tensor)


def prepare_image(classifier: OnnxClassifier, image: tensor_pb2.ImageInput, *, max_pixels: int) -> PreparedImage:
    kind = image.WhichOneof("kind")
    if kind == "encoded":
        decoded = decode_image(image.encoded, max_pixels=max_pixels)
        tensor, geometry = preprocess(
            decoded, classifier.config.preprocessing, size=(classifier.height, classifier.width),
            channels=classifier.channels, max_pixels=max_pixels,
        )
        return PreparedImage(tensor, geometry, to_rgb_array(decoded))
    if kind == "tensor":
        array = from_tensor(image.tensor, field="image.tensor")
        return PreparedImage(canonical_tensor(array, classifier.model_input), None, None)
    raise InvalidArgument("image", "no image given; set image.encoded (PNG/JPEG bytes) or image.tensor")


def resolve_objective(
    classifier: OnnxClassifier, image: NDArray[np.float32], target: ex_pb2.Target, *, max_targets: int,
    context: RunContext,
) -> Objective:
    """Target message → :class:`Objective`. Top-k costs one forward pass (charged to ``context``)."""
    space = "probability" if target.score_space == ex_pb2.SCORE_SPACE_PROBABILITY else "output"
    contrast = target.contrast_class if target.HasField("contrast_class") else None
    loss = contrast_loss_name(target.contrast_loss)
    chosen = [name for name in ("class_indices", "top_k", "class_weights") if _is_set(target, name)]
    if len(chosen) > 1:
        raise InvalidArgument("target", f"set only one of class_indices, top_k, class_weights (got {', '.join(chosen)})")
    if target.HasField("class_weights"):
        if contrast is not None:
            raise InvalidArgument("target.contrast_class", "cannot be combined with class_weights; fold it into the weights")
        if loss != DIFFERENCE:
            raise InvalidArgument("target.contrast_loss", f"{loss} needs target.contrast_class, not class_weights")
        weights = from_tensor(target.class_weights, field="target.class_weights").astype(np.float32)
        if weights.ndim != 2 or weights.shape[1] != classifier.num_classes:
            raise InvalidArgument(
                "target.class_weights", f"shape {list(weights.shape)}; allowed: [targets, {classifier.num_classes}]"
            )
        _check_count(len(weights), max_targets)
        classes = tuple(int(i) for i in np.argmax(weights, axis=1))
        return Objective(weights, classes, space)
    if target.class_indices:
        classes = [int(c) for c in target.class_indices]
    else:
        k = target.top_k or 1
        _check_count(k, max_targets)
        scores = classifier.predict(image[None], context=context)[0]
        classes = top_classes(scores, k)
    _check_count(len(classes), max_targets)
    return Objective.for_classes(classes, classifier.num_classes, contrast=contrast, space=space, loss=loss)


CONTRAST_LOSSES = {
    ex_pb2.CONTRAST_LOSS_UNSPECIFIED: DIFFERENCE,
    ex_pb2.CONTRAST_LOSS_DIFFERENCE: DIFFERENCE,
    ex_pb2.CONTRAST_LOSS_CROSS_ENTROPY: CROSS_ENTROPY,
}


def contrast_loss_name(value: int) -> str:
    """The wire enum → the library's contrast loss name.

    Raises:
        InvalidArgument: a value this server does not know (proto3 enums are open)."""
    if value not in CONTRAST_LOSSES:
        choices = ", ".join(ex_pb2.ContrastLoss.Name(v) for v in CONTRAST_LOSSES if v)
        raise InvalidArgument("target.contrast_loss", f"{value} is not allowed; choices: {choices}")
    return CONTRAST_LOSSES[value]


def contrast_loss_value(objective: Objective) -> int:
    """What a TargetInfo reports: the loss used, or UNSPECIFIED without a contrast class."""
    if objective.contrast is None:
        return ex_pb2.CONTRAST_LOSS_UNSPECIFIED
    return ex_pb2.CONTRAST_LOSS_CROSS_ENTROPY if objective.cross_entropy else ex_pb2.CONTRAST_LOSS_DIFFERENCE


def _is_set(target: ex_pb2.Target, name: str) -> bool:
    if name == "class_weights":
        return target.HasField("class_weights")
    return bool(getattr(target, name))


def _check_count(count: int, max_targets: int) -> None:
    if not 1 <= count <= max_targets:
        raise InvalidArgument("target", f"{count} targets requested; allowed: [1, {max_targets}]")
