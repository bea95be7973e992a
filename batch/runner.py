"""A batch job on Ray Data: source rows → an actor pool (one backend per actor) → Parquet rows.

Locally it starts an embedded Ray on this machine (no cluster); given a cluster's address it runs
there unchanged. Rows already in the output for the same (path, method, params) are skipped, so a
job that stopped — or one run again — does only what is missing.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from . import records
from .backends import (
    Backend,
    Job,
    LibraryBackend,
    ServerBackend,
    describe,
    first_ready_model,
    library_model,
    outcome_or_error,
)
from .sources import IMAGE_COLUMN, PATH_COLUMN, read_source


@dataclass(frozen=True)
class BatchSummary:
    """What one run did. ``images`` were explained (or failed) now; ``skipped`` were already written."""

    model: str
    """The model that explained them (chosen when the caller named none: said here, never silently)."""
    source_rows: int
    skipped: int
    images: int
    failed: int
    rows: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


class ExplainActor:
    """A Ray Data actor: builds its backend once (one loaded model or one channel), then explains batches.

    ``__call__`` maps a numpy batch with ``path`` (and optionally ``image`` bytes) to a table of
    :mod:`.records` rows; unreadable files and failed explanations become error rows.
    """

    def __init__(self, backend: Callable[[], Backend], job: Job, params_key: str, run: str, heatmap_format: str):
        self.backend = backend()
        self.job, self.params_key, self.run, self.heatmap_format = job, params_key, run, heatmap_format
        self.schema = records.schema(heatmap_format)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        images = batch.get(IMAGE_COLUMN)
        out: list[dict[str, Any]] = []
        for index, path in enumerate(batch[PATH_COLUMN]):
            image, read_error = (images[index], None) if images is not None else _read(str(path))
            outcome = outcome_or_error(self.backend, image, self.job, read_error)
            out += records.rows(str(path), outcome, model=self.backend.model, method=self.job.method,
                                params=self.params_key, run=self.run, heatmap_format=self.heatmap_format)
        return pa.Table.from_pylist(out, schema=self.schema)


def _read(path: str) -> tuple[bytes | None, str | None]:
    try:
        return Path(path).read_bytes(), None
    except OSError as exc:
        return None, describe(exc)


def explain_dataset(
    source: str,
    output: str | Path,
    method: str,
    *,
    models: str | Path | None = None,
    server: str | None = None,
    model: str | None = None,
    params: Mapping[str, Any] | None = None,
    seed: int = 0,
    classes: Sequence[int] | None = None,
    top_k: int = 1,
    heatmap_format: str = "fp16",
    actors: int | None = None,
    cpus_per_actor: float = 1.0,
    batch_size: int = 4,
    address: str | None = None,
    client_options: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> BatchSummary:
    """Explain every image of ``source`` with ``method``; append the rows to the Parquet folder ``output``.

    Args:
        source: a folder, a glob, a CSV/Parquet of paths or a Parquet of images (:mod:`.sources`).
        models: explain in-process with the library: a model repository (loaded as the server loads it);
            or ``server``: HOST:PORT of an onnxplain server (exactly one of the two).
        model: the model's name (default: the first in ``models``, or the server's first ready one).
        params, seed, classes / top_k: the method's parameters, its seed (the same for every image),
            and which classes to explain (default: the best one).
        heatmap_format: ``"fp16"`` or ``"png"`` (:mod:`.records`).
        actors: size of the actor pool (default: the cluster's CPUs / ``cpus_per_actor``); each actor
            holds one backend; ``batch_size`` images go to an actor at a time.
        address: a Ray cluster to run on (default: the running Ray, else an embedded one here).
        client_options: keyword arguments of :class:`onnxplain.client.Client` (token, TLS, timeout).

    Raises:
        ValueError: both or neither of ``models``/``server``; ``output`` holds another heatmap format;
            unknown parameters of ``method`` (checked before Ray starts, not once per image).
        FileNotFoundError: ``source`` names nothing. NotFound: no such model, or an unknown method.
    """
    import ray

    if (models is None) == (server is None):
        raise ValueError("give exactly one of models= (explain in this process) or server= (an onnxplain server)")
    output = Path(output)
    schema = records.schema(heatmap_format)
    started = time.perf_counter()
    if address:
        ray.init(address=address, ignore_reinit_error=True)  # a cluster: the same job, scaled out
    elif not ray.is_initialized():
        ray.init(include_dashboard=False)  # an embedded Ray on this machine
    ray.data.DataContext.get_current().enable_progress_bars = progress
    check_params(method, dict(params or {}), library=models is not None)
    job = Job(method, dict(params or {}), seed, tuple(classes) if classes else None, top_k)
    key = records.params_key(job.params, seed=seed, classes=job.classes, top_k=top_k)
    threads = max(1, int(cpus_per_actor))
    if models is not None:
        model = library_model(models, model)
        backend = functools.partial(LibraryBackend, models, model, threads=threads)
    else:
        options = dict(client_options or {})
        model = model or first_ready_model(server, **options)
        backend = functools.partial(ServerBackend, server, model, **options)
    done = written_paths(output, method, key, schema, model=model)
    dataset, source_rows = read_source(source, done)
    pool = actors or max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_actor))
    run = uuid.uuid4().hex
    results = dataset.map_batches(
        ExplainActor, fn_constructor_kwargs={"backend": backend, "job": job, "params_key": key, "run": run,
                                             "heatmap_format": heatmap_format},
        batch_size=batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=pool),
        num_cpus=cpus_per_actor)
    results.write_parquet(str(output), ray_remote_args={"num_cpus": 0})  # like the read: never waits for the pool
    return _summarise(output, model, run, source_rows, len(done), time.perf_counter() - started)


def _existing(output: Path):
    """The Parquet dataset in ``output``, or ``None`` when nothing has been written there yet."""
    import pyarrow.dataset as pads

    if not output.is_dir() or not any(output.glob("*.parquet")):
        return None
    return pads.dataset(str(output), format="parquet")


def check_params(method: str, params: dict[str, Any], *, library: bool) -> None:
    """Refuse bad parameters once, before any work: the library's own check in-process, the contract's
    params message for a server (the server checks values again)."""
    if library:
        from onnxplain.explainers import get_method

        get_method(method).params.from_mapping(params)
    elif params:
        from onnxplain.client import Client

        Client.explain_request("model", b"", method, params=params)


def written_paths(output: Path, method: str, params_key: str, schema: pa.Schema, *, model: str | None = None
                  ) -> frozenset[str]:
    """Paths that already have rows in ``output`` for this method and ``params_key`` — and ``model``, when
    named (resume skips them; error rows count as done: a corrupt image stays corrupt).

    Raises:
        ValueError: ``output`` holds heatmaps in another format (one folder, one schema).
    """
    import pyarrow.compute as pc

    existing = _existing(output)
    if existing is None:
        return frozenset()
    found = existing.schema.field("heatmap").type
    if found != schema.field("heatmap").type:
        raise ValueError(f"{output} holds heatmaps as {found}; this run writes {schema.field('heatmap').type}: "
                         "use the same heatmap format or another output folder")
    same_job = (pc.field("method") == method) & (pc.field("params") == params_key)
    if model is not None:
        same_job &= pc.field("model") == model
    table = existing.to_table(columns=[PATH_COLUMN], filter=same_job)
    return frozenset(table.column(PATH_COLUMN).to_pylist())


def _summarise(output: Path, model: str, run: str, source_rows: int, skipped: int, seconds: float) -> BatchSummary:
    import pyarrow.compute as pc

    existing = _existing(output)
    if existing is None:
        return BatchSummary(model, source_rows, skipped, 0, 0, 0, seconds)
    table = existing.to_table(columns=[PATH_COLUMN, "error"], filter=pc.field("run") == run)
    images = len(set(table.column(PATH_COLUMN).to_pylist()))
    failed = int(pc.sum(pc.is_valid(table.column("error"))).as_py() or 0)
    return BatchSummary(model, source_rows, skipped, images, failed, table.num_rows, seconds)
