"""**The** batched evaluation loop of the project, and the one chunk type it yields.

Every evaluation of every method goes through :func:`evaluate_in_chunks`: chunking to a batch
size, the short last chunk, evaluation counting, cancellation between chunks (and of the run in
flight), and building the next feed while onnxruntime runs the current one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from ..context import RunContext
from .preprocessing import ModelInput

IMAGE = "image"
"""Key of the image batch in a feed: canonical [n, C, H, W] float32, converted by the loop."""


@dataclass(frozen=True)
class Chunk:
    """Samples ``[start, stop)`` of a run: ``outputs`` maps an output name to its rows [n, ...]."""

    start: int
    stop: int
    outputs: dict[str, NDArray]

    def tail(self, rows: int) -> Chunk:
        """The last ``rows`` samples of this chunk."""
        return Chunk(self.stop - rows, self.stop, {name: value[-rows:] for name, value in self.outputs.items()})


def concatenate(chunks: Sequence[Chunk]) -> dict[str, NDArray]:
    """The outputs of consecutive ``chunks``, each concatenated along the samples."""
    return {name: np.concatenate([chunk.outputs[name] for chunk in chunks]) for name in chunks[0].outputs}


def evaluate_in_chunks(
    session: ort.InferenceSession,
    count: int,
    make_batch: Callable[[int, int], Mapping[str, NDArray]],
    *,
    model_input: ModelInput,
    input_name: str,
    outputs: Sequence[str],
    batch: int,
    context: RunContext,
    backward: bool = False,
    static: Mapping[str, NDArray] | None = None,
    forwards: int = 1,
) -> Iterator[Chunk]:
    """Evaluate ``count`` samples through ``session`` in chunks of at most ``batch``.

    ``make_batch(start, stop)`` builds the feed for samples ``[start, stop)``; its :data:`IMAGE`
    entry is canonical [n, C, H, W] float32 and is converted to ``model_input``'s layout and dtype
    and fed as ``input_name``, other entries are fed as they are. The next chunk's feed is built
    on a helper thread while onnxruntime runs the current one. Each chunk is charged to
    ``context`` (``forwards`` forward evaluations per sample, and a backward one when
    ``backward``) and cancellation is checked before it runs; a cancelled context also
    terminates the run in flight.

    ``static`` inputs are the same for every chunk (a perturbation prefix's image and
    baseline): on CUDA they are copied to the device once and bound, so each chunk moves only
    what ``make_batch`` returns; its bytes are counted in ``context.bytes_fed``.

    Yields:
        :class:`Chunk` with the ``outputs`` named.

    Raises:
        Cancelled: the context was cancelled. ResourceExhausted: over the evaluation budget.
    """
    if count <= 0:
        return
    names = list(outputs)
    step = max(1, batch)
    bounds = [(start, min(start + step, count)) for start in range(0, count, step)]
    bound = bind_static(session, static)

    def feed(start: int, stop: int) -> dict[str, NDArray]:
        values = dict(make_batch(start, stop))
        if IMAGE in values:
            values[input_name] = model_input.to_model_layout(values.pop(IMAGE))
        return values

    def run(start: int, stop: int, values: dict[str, NDArray]) -> Chunk:
        context.charge(forward=forwards * (stop - start), backward=(stop - start) if backward else 0)
        context.bytes_fed += sum(value.nbytes for value in values.values())
        return Chunk(start, stop, dict(zip(names, run_once(session, names, values, context, bound))))

    if len(bounds) == 1:  # nothing to prefetch: no helper thread (a single-image method's fixed cost)
        context.check()
        yield run(0, count, feed(0, count))
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="feed") as prefetcher:
        pending = prefetcher.submit(feed, *bounds[0])
        for index, (start, stop) in enumerate(bounds):
            context.check()
            values = pending.result()
            if index + 1 < len(bounds):
                pending = prefetcher.submit(feed, *bounds[index + 1])
            yield run(start, stop, values)


def bind_static(session: ort.InferenceSession, static: Mapping[str, NDArray] | None):
    """Static inputs as a feed (CPU: the arrays themselves) or device-resident OrtValues (CUDA)."""
    if not static:
        return None
    if session.get_providers()[0] != "CUDAExecutionProvider":
        return {name: np.ascontiguousarray(value) for name, value in static.items()}
    return {name: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value), "cuda", 0)
            for name, value in static.items()}


def run_once(session: ort.InferenceSession, names: list[str], feed: dict, context: RunContext,
             bound: dict | None = None) -> list[NDArray]:
    """One onnxruntime run of ``feed`` (plus the ``bound`` static inputs), terminated if ``context``
    is cancelled meanwhile.

    Raises:
        Cancelled: the context was cancelled while the run was in flight.
    """
    options = ort.RunOptions()

    def terminate() -> None:
        options.terminate = True

    context.add_terminator(terminate)
    try:
        if bound and isinstance(next(iter(bound.values())), ort.OrtValue):
            binding = session.io_binding()
            for name, value in bound.items():
                binding.bind_ortvalue_input(name, value)
            for name, value in feed.items():
                binding.bind_cpu_input(name, value)
            for name in names:
                binding.bind_output(name, "cpu")
            session.run_with_iobinding(binding, options)
            return binding.copy_outputs_to_cpu()
        return session.run(names, {**feed, **(bound or {})}, options)
    except Exception as exc:
        if context.cancelled:
            raise context.stopped("while a batch was running") from exc
        raise
    finally:
        context.remove_terminator(terminate)
