"""One Explain request, start to finish, as a synchronous generator of response messages (and the pieces
Evaluate shares: resolving the request, the evaluation limit, progress messages, the result message).

Runs on a worker thread: resolve the model, prepare the image and the objective, run the method,
throttle partial heatmaps, and build the result (original-grid mapping, overlays). The servicer
only forwards what this yields, so the whole pipeline is testable without gRPC.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from onnxplain.explainers import (
    Explanation,
    Objective,
    OnnxClassifier,
    Planned,
    Progress,
    RunContext,
    explain,
    get_method,
)
from onnxplain.explainers.errors import InvalidArgument, ResourceExhausted
from onnxplain.explainers.methods import MethodSpec
from onnxplain.explainers.params import MethodParams
from onnxplain.explainers.render import overlay, png_bytes
from onnxplain.v1 import explanation_service_pb2 as ex_pb2
from onnxplain.v1.wire import to_tensor

from .convert import PARAMS_ONEOF, encode_heatmaps, params_field, params_from_proto
from .limits import ServerLimits
from .repository import ModelRepository
from .requests import PreparedImage, contrast_loss_value, prepare_image, resolve_objective

MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class PreparedExplanation:
    """Everything an ExplainRequest resolves to before any method runs (Explain and Evaluate share it).

    ``spent``: evaluations already charged to the request's context (the forward that found the top-k).
    """

    spec: MethodSpec
    classifier: OnnxClassifier
    params: MethodParams
    seed: int
    image: PreparedImage
    objective: Objective
    targets: list[ex_pb2.TargetInfo]
    spent: int
    started: float

    @property
    def warnings(self) -> list[str]:
        return list(self.classifier.info.warnings)

    def accepted(self, planned: int) -> ex_pb2.Accepted:
        """Explain's accepted event for ``planned`` evaluations of the method (the top-k forward added here)."""
        return ex_pb2.Accepted(
            model=self.classifier.name, method=self.spec.name, seed=self.seed, planned_evaluations=self.spent + planned,
            targets=self.targets, parameters={k: str(v) for k, v in self.params.as_dict().items()},
            warnings=self.warnings,
        )


def prepare_explanation(request: ex_pb2.ExplainRequest, repository: ModelRepository, limits: ServerLimits,
                        context: RunContext) -> PreparedExplanation:
    """Resolve method, model, parameters, seed, image and target; refuse a result too large to send."""
    started = time.perf_counter()
    spec = get_method(request.method)
    classifier = repository.get(request.model)
    given = request.WhichOneof(PARAMS_ONEOF)
    expected = params_field(spec.name)
    if given is not None and given != expected:
        raise InvalidArgument(given, f"parameters for {given!r} given, but the method is {spec.name!r}")
    params = spec.params.from_mapping(params_from_proto(getattr(request, given)) if given else {})
    seed = request.seed if request.HasField("seed") else secrets.randbelow(MAX_SEED)
    image = prepare_image(classifier, request.image, max_pixels=limits.max_image_pixels)
    objective = resolve_objective(classifier, image.tensor, request.target, max_targets=limits.max_targets, context=context)
    targets = [
        ex_pb2.TargetInfo(class_index=c, label=classifier.labels[c], contrast_class=objective.contrast,
                          contrast_loss=contrast_loss_value(objective))
        for c in objective.classes
    ]
    check_result_size(len(targets), (classifier.height, classifier.width), image, request.output,
                      limits.max_message_bytes, tensor_planes=spec.tensor_planes(classifier.channels))
    return PreparedExplanation(spec, classifier, params, seed, image, objective, targets,
                               spent=context.forward + context.backward, started=started)


def check_planned(planned: int, limits: ServerLimits, what: str) -> None:
    """Refuse, before any work, a request that plans more model evaluations than the server allows."""
    if planned > limits.max_evaluations:
        raise ResourceExhausted(
            f"{what} plans {planned} model evaluations; this server allows at most {limits.max_evaluations} "
            "per request (--max-evaluations)"
        )


class ProgressMessages:
    """Progress events of one request: done/total in the request's own evaluations, partial heatmaps throttled
    to at most one per ``output.partial_interval_ms``."""

    def __init__(self, output: ex_pb2.OutputOptions, context: RunContext, spent: int):
        self.output, self.context, self.spent = output, context, spent
        self.interval = output.partial_interval_ms / 1000.0
        self.last_partial = -float("inf")

    def message(self, event: Progress) -> ex_pb2.Progress:
        # the request's own count (methods count their own work or the context's): done ends at total
        total = self.spent + event.total
        progress = ex_pb2.Progress(done=min(self.context.forward + self.context.backward, total), total=total)
        now = time.perf_counter()
        if self.interval > 0 and event.heatmaps is not None and now - self.last_partial >= self.interval:
            progress.partial_heatmaps.CopyFrom(encode_heatmaps(event.heatmaps, self.output.heatmap_datatype))
            self.last_partial = now
        return progress


def run_explain(
    request: ex_pb2.ExplainRequest, repository: ModelRepository, limits: ServerLimits, context: RunContext
) -> Iterator[ex_pb2.ExplainResponse]:
    rid = request.request_id
    job = prepare_explanation(request, repository, limits, context)
    progress = ProgressMessages(request.output, context, job.spent)
    events = explain(job.classifier, job.image.tensor, job.spec.name, job.objective, job.params, seed=job.seed,
                     context=context, companions=repository.companion)
    for event in events:
        if isinstance(event, Planned):
            check_planned(job.spent + event.total, limits, f"{job.spec.name} with these parameters")
            yield ex_pb2.ExplainResponse(request_id=rid, accepted=job.accepted(event.total))
        elif isinstance(event, Progress):
            yield ex_pb2.ExplainResponse(request_id=rid, progress=progress.message(event))
        elif isinstance(event, Explanation):
            yield ex_pb2.ExplainResponse(request_id=rid, result=explanation_result(event, job, request.output))


BYTES_PER_VALUE = {ex_pb2.HEATMAP_DATATYPE_FP16: 2, ex_pb2.HEATMAP_DATATYPE_UINT8: 1}


def check_result_size(targets: int, size: tuple[int, int], image, output: ex_pb2.OutputOptions, limit: int, *,
                      tensor_planes: int = 0) -> None:
    """Refuse before any work a result that could not be sent: heatmaps T × H × W (+ the original grid and
    overlays on the photo's own grid, an overlay counted at its raw size 3 × h × w, which PNG never exceeds by
    much, + the method's ``tensor_planes`` float32 H × W planes per target, e.g. CEM's images) must fit the
    message limit."""
    per_value = BYTES_PER_VALUE.get(output.heatmap_datatype, 4)
    total = targets * size[0] * size[1] * (per_value + 4 * tensor_planes)
    original = image.geometry.original if image.geometry is not None else size
    if output.original_grid and image.geometry is not None:
        total += targets * original[0] * original[1] * per_value
    if output.overlay_png:
        total += targets * original[0] * original[1] * 3
    if total > 0.95 * limit:
        raise ResourceExhausted(
            f"the result would be about {total / 2**20:,.1f} MiB ({targets} targets on a {original[1]}x{original[0]} "
            f"photo); this server sends at most {limit / 2**20:,.0f} MiB per message: ask for UINT8 or FP16 heatmaps, "
            "fewer targets, no original_grid or no overlay_png, or send a smaller photo")


def explanation_result(event: Explanation, job: PreparedExplanation, output: ex_pb2.OutputOptions) -> ex_pb2.Result:
    """The Result message of ``event``: heatmaps in the requested datatype, the original grid, overlays, costs."""
    targets, image = job.targets, job.image
    heatmaps = event.heatmaps
    result = ex_pb2.Result(
        heatmaps=encode_heatmaps(heatmaps, output.heatmap_datatype),
        forward_evaluations=event.forward,
        backward_evaluations=event.backward,
        extras=event.extras,
    )
    for name, values in event.tensors.items():
        result.tensors[name].CopyFrom(to_tensor(np.asarray(values, np.float32)))
    on_original = image.geometry.to_original(heatmaps) if image.geometry is not None else None
    if output.original_grid and on_original is not None:
        result.original_heatmaps.CopyFrom(encode_heatmaps(on_original, output.heatmap_datatype))
    signed = bool(np.nanmin(heatmaps) < 0)
    for index, (info, score) in enumerate(zip(targets, event.scores)):
        item = result.targets.add(
            target=info, score=float(score), heatmap_min=float(heatmaps[index].min()),
            heatmap_max=float(heatmaps[index].max()),
        )
        if output.overlay_png:
            drawn = on_original[index] if on_original is not None else heatmaps[index]
            item.overlay_png = png_bytes(overlay(image.canvas, drawn, signed=signed))
    result.elapsed_seconds = time.perf_counter() - job.started
    result.warnings.extend(job.warnings)
    return result
