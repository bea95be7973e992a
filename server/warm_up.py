"""Model warm-up: when a model loads, explain one probe image with each method the server was started with
(``--warm-up saliency,grad_cam``), before the model is swapped in (READY; on a reload, before the new version
replaces the one serving meanwhile), so that no request pays for
building and compiling the graphs those methods use (Triton's ``model_warmup``, by method instead of by
sample request). A gradient method's first call otherwise pays the introspection, the gradient graph's build
and onnxruntime's compile of it. First request after a load, without → with ``--warm-up saliency,grad_cam``:
saliency 0.66 → 0.05 s and Grad-CAM 0.18 → 0.01 s on the bundled EfficientNet-Lite0; 16.5 → 0.37 s and
9.9 → 0.18 s on a VGG11-sized model whose config raises ``max_cache_bytes`` (its graphs, ~530 MB each, exceed
the default 256 MiB, so each evicts the other and the first requests still took 6.3–6.7 s: a warning says so).

The probe image is uniform noise between the model's black and white images (its preprocessing applied), the
objective its class 0, the parameters each method's defaults. A method that cannot run that way on a model
(Grad-CAM without a CAM layer, a method that needs a companion model) is logged and skipped: the load
succeeds, and a request for it gets the error the warm-up met. The warm-up is part of the load: it counts
toward a LoadModel's deadline (``--load-timeout-seconds``), and an abandoned load stops it before the next
method. Remote models (black-box methods only, nothing to compile) and companion models are not warmed up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import numpy as np

from onnxplain.explainers import Objective, OnnxClassifier, explain_once, get_method
from onnxplain.explainers.model.remote import RemoteClassifier

log = logging.getLogger("onnxplain.server")
PROBE_SEED = 2024


def warm_up_methods(names: Iterable[str]) -> tuple[str, ...]:
    """The registered methods ``names`` (blanks ignored, each once, in order).

    Raises:
        NotFound: an unknown method; the message lists the registered ones.
    """
    methods: list[str] = []
    for name in (name.strip() for name in names):
        if name and name not in methods:
            get_method(name)  # raises NotFound with the choices
            methods.append(name)
    return tuple(methods)


def warm_up(classifier: OnnxClassifier, methods: tuple[str, ...], model: str, *,
            abandoned: Callable[[], bool] = lambda: False) -> None:
    """Explain a probe image with each of ``methods`` on ``classifier`` (see the module docstring), stopping
    before the next method once ``abandoned()`` says the load was given up."""
    if not methods or isinstance(classifier, RemoteClassifier):
        return
    black, white = classifier.black_image(), classifier.white_image()
    noise = np.random.default_rng(PROBE_SEED).random(black.shape, dtype=np.float32)
    image = (black + (white - black) * noise).astype(np.float32)
    objective = Objective.for_classes([0], classifier.num_classes)
    evictions = classifier.sessions.stats().evictions
    for method in methods:
        if abandoned():
            return
        started = time.perf_counter()
        try:
            explain_once(classifier, image, method, objective)
        except Exception as exc:  # noqa: BLE001 — any failure: the request for it will say the same
            log.warning("model %s: warm-up of %s skipped: %s", model, method, exc)
            continue
        log.info("model %s: %s warmed up in %.2f s", model, method, time.perf_counter() - started)
    if classifier.sessions.stats().evictions > evictions:
        log.warning("model %s: the warmed-up graphs exceed its config.max_cache_bytes (%d bytes), so the first ones "
                    "were dropped again and will be rebuilt when asked for; raise max_cache_bytes in its config.json "
                    "to keep them", model, classifier.sessions.max_bytes)
