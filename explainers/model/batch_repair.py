"""Make a model evaluate batches: many exports fix the batch at 1 or bake it into Reshapes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime as ort
from numpy.typing import NDArray

from ..errors import InvalidModel
from ..graph.dynamic_batch import make_batch_dynamic

BATCH_MODES = ("dynamic", "rewritten", "per_sample")


def with_working_batch(
    model: onnx.ModelProto,
    *,
    input_name: str,
    declared_batch: int | str | None,
    probe: NDArray,
    open_session: Callable[[onnx.ModelProto], ort.InferenceSession],
    output: Callable[[list[NDArray]], NDArray],
) -> tuple[onnx.ModelProto, str, ort.InferenceSession]:
    """A model that evaluates a batch of 2 as it evaluates each sample alone, how it was obtained, and the
    session compiled from it on the way (the caller's plain session: compiling a large model twice cost
    seconds).

    Tries, in order: the model as it is (unless its input declares batch 1: ``"dynamic"``), its
    batch dimension made symbolic, then also its Reshape targets rewritten (``"rewritten"``); else
    the model runs one sample at a time (``"per_sample"``).

    Args:
        declared_batch: the input's declared batch dimension.
        probe: two images in the model's layout and dtype.
        output: the class-score output among a run's outputs.

    Raises:
        InvalidModel: onnxruntime cannot load the model, or a model with a dynamic batch fails to run.
    """
    attempts: list[tuple[str, Callable[[], onnx.ModelProto]]] = []
    if declared_batch != 1:
        attempts.append(("dynamic", lambda: model))
    attempts.append(("rewritten", lambda: make_batch_dynamic(model)))
    attempts.append(("rewritten", lambda: make_batch_dynamic(model, fix_reshapes=True)))
    for mode, build in attempts:
        candidate = build()
        try:
            session = open_session(candidate)
            together = output(session.run(None, {input_name: probe}))
            apart = np.concatenate([output(session.run(None, {input_name: probe[i : i + 1]})) for i in range(2)])
        except InvalidModel:
            if mode == "dynamic":
                raise
            continue
        except Exception:  # a batch of 2 failed to run: this rewrite does not work
            continue
        if together.shape == apart.shape and np.allclose(together, apart, rtol=1e-3, atol=1e-4):
            return candidate, mode, session
    return model, "per_sample", open_session(model)  # raises InvalidModel if even batch 1 cannot load
