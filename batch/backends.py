"""Who explains one image: the library in this process, or an onnxplain server through the client.

Both turn encoded image bytes into an :class:`~.records.ImageOutcome` with the same targets, scores
and heatmaps (model-input pixels) for the same model, method, parameters and seed. A backend is
built once per Ray actor (one loaded model or one channel per actor) and reused for every image.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .records import ImageOutcome, TargetMap


@dataclass(frozen=True)
class Job:
    """What to compute for every image: ``classes`` (explicit class indices) or the ``top_k`` best."""

    method: str
    params: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    classes: Sequence[int] | None = None
    top_k: int = 1


class Backend(Protocol):
    model: str

    def explain(self, image: bytes, job: Job) -> ImageOutcome:
        """Explain one encoded image; raises whatever the library or the server raised."""


def outcome_or_error(backend: Backend, image: bytes | None, job: Job, read_error: str | None = None) -> ImageOutcome:
    """Run ``backend`` on one image, turning any exception into an error outcome (the job goes on)."""
    started = time.perf_counter()
    if image is None:
        return ImageOutcome(error=read_error)
    try:
        outcome = backend.explain(image, job)
    except Exception as exc:  # noqa: BLE001 — one bad image must not end the job: its row carries the error
        return ImageOutcome(error=describe(exc), seconds=time.perf_counter() - started)
    return ImageOutcome(outcome.targets, outcome.forward, outcome.backward, time.perf_counter() - started)


def describe(exc: BaseException) -> str:
    """``"Type: message"``; a gRPC error as ``"CODE: details"``."""
    code = getattr(exc, "code", None)
    if callable(code) and hasattr(exc, "details"):
        return f"{code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"


class LibraryBackend:
    """The model loaded in this process exactly as the server loads it (``onnxplain.server.repository``): the
    same labels, preprocessing, Triton layout, export metadata, remote endpoints and load-time checks.

    Args:
        models: a model repository (``<models>/<name>/…``).
        model: the model's name in it (resolve it with :func:`library_model` first).
        threads: onnxruntime intra-op threads (one per CPU the actor holds).

    Raises:
        NotFound: no such model. InvalidModel (and the repository's other errors): the model cannot be served.
    """

    def __init__(self, models: str | Path, model: str, *, threads: int = 1):
        from onnxplain.server.repository import ModelRepository

        repository = ModelRepository(Path(models), threads=threads)
        repository.load(model)
        self.classifier = repository.get(model)  # a companion model (generator, autoencoder) is refused by name
        self.model = model

    def explain(self, image: bytes, job: Job) -> ImageOutcome:
        from onnxplain.explainers import Objective, RunContext, explain_once, top_classes

        classifier = self.classifier
        tensor, _ = classifier.preprocess(image)
        context = RunContext()
        classes = list(job.classes) if job.classes else top_classes(
            classifier.predict(tensor[None], context=context)[0], job.top_k)
        objective = Objective.for_classes(classes, classifier.num_classes)
        result = explain_once(classifier, tensor, job.method, objective, job.params, seed=job.seed, context=context)
        targets = tuple(TargetMap(c, classifier.labels[c], float(s), h)
                        for c, s, h in zip(classes, result.scores, result.heatmaps))
        return ImageOutcome(targets, result.forward, result.backward)


def library_model(models: str | Path, model: str | None) -> str:
    """The name of the model a ``--models`` run explains: ``model``, or the repository's first by name (what
    the run reports, so the choice is never silent).

    Raises:
        NotFound: ``model`` is not in the repository, or the repository holds no model.
    """
    from onnxplain.explainers.errors import NotFound
    from onnxplain.server.repository import ModelRepository

    names = ModelRepository(Path(models)).names()
    if model is not None and model not in names or not names:
        raise NotFound("model", model or "(any)", names)
    return model or names[0]


class ServerBackend:
    """An onnxplain server at ``address`` (one channel per actor); ``client_options`` go to ``Client``."""

    def __init__(self, address: str, model: str, **client_options: Any):
        from onnxplain.client import Client

        self.client = Client(address, **client_options)
        self.model = model

    def explain(self, image: bytes, job: Job) -> ImageOutcome:
        result = self.client.explain(self.model, image, job.method, classes=job.classes,
                                     top_k=None if job.classes else job.top_k, params=job.params, seed=job.seed)
        targets = tuple(TargetMap(t.class_index, t.label, t.score, h) for t, h in zip(result.targets, result.heatmaps))
        return ImageOutcome(targets, result.forward_evaluations, result.backward_evaluations)


def first_ready_model(address: str, **client_options: Any) -> str:
    """The server's first ready model (what ``onnxplain explain`` uses without ``--model``).

    Raises:
        ValueError: the server has no ready model.
    """
    from onnxplain.client import Client
    from onnxplain.v1 import model_service_pb2 as model_pb2

    with Client(address, **client_options) as client:
        ready = [m.name for m in client.list_models() if m.state == model_pb2.MODEL_STATE_READY]
    if not ready:
        raise ValueError(f"the server at {address} has no ready model; name one with model=")
    return ready[0]
