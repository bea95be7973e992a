"""What a batch job reads: a folder, a glob, a CSV/Parquet of image paths, or a Parquet of images.

Every source becomes a Ray dataset with a string column ``path`` (the row's identity, also used for
resume) and, for a Parquet of images, a binary column ``image``; rows without ``image`` are read from
``path`` by the worker, so a missing or unreadable file is that row's error, not the job's.
"""

from __future__ import annotations

import glob
from pathlib import Path

from onnxplain.client.cli import image_files

PATH_COLUMN = "path"
IMAGE_COLUMN = "image"


def list_paths(source: str) -> list[str] | None:
    """The image paths named by ``source``, or ``None`` when it is a Parquet with an ``image`` column.

    ``source``: a folder (its image files), a glob (``photos/*.jpg``, ``**`` allowed), a ``.csv`` or
    ``.parquet`` table with a ``path`` column (relative paths are relative to the table's folder).

    Raises:
        FileNotFoundError: the folder, table or glob names nothing.
        ValueError: a table without a ``path`` column.
    """
    path = Path(source)
    if path.is_dir():
        return [str(p.resolve()) for p in image_files(path)]
    if path.suffix.lower() in (".csv", ".parquet") and path.is_file():
        table = _read_table(path)
        if PATH_COLUMN not in table.column_names:
            raise ValueError(f"{source}: no {PATH_COLUMN!r} column; columns: {', '.join(table.column_names)}")
        if IMAGE_COLUMN in table.column_names:
            return None
        return [str((path.parent / p).resolve()) for p in table.column(PATH_COLUMN).to_pylist()]
    matches = sorted(glob.glob(source, recursive=True))
    if not matches:
        raise FileNotFoundError(f"{source}: no such folder, table (.csv, .parquet) or files matching the glob")
    return [str(Path(m).resolve()) for m in matches if Path(m).is_file()]


def _read_table(path: Path):
    """The table's schema-level view: for a Parquet only its column names are needed up front."""
    if path.suffix.lower() == ".csv":
        from pyarrow import csv

        return csv.read_csv(path)
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    if IMAGE_COLUMN in schema.names:  # images stay on disk: Ray reads them in blocks
        return schema.empty_table()
    return pq.read_table(path, columns=[PATH_COLUMN] if PATH_COLUMN in schema.names else None)


def read_source(source: str, done: frozenset[str] = frozenset()):
    """A Ray dataset of the rows of ``source`` whose ``path`` is not in ``done`` (resume).

    Returns:
        (dataset, rows): ``rows`` counts the source's rows before resume filtering.
    """
    import ray.data

    paths = list_paths(source)
    if paths is not None:
        return ray.data.from_items([{PATH_COLUMN: p} for p in paths if p not in done]), len(paths)
    import pyarrow.parquet as pq

    rows = pq.ParquetFile(source).metadata.num_rows
    dataset = ray.data.read_parquet(source, columns=[PATH_COLUMN, IMAGE_COLUMN])
    if done:
        dataset = dataset.filter(lambda row: row[PATH_COLUMN] not in done)
    # read now, while every CPU is free: the actor pool may then hold them all, and a read (or its file
    # listing) waiting for a CPU would never run; Ray spills what does not fit in the object store
    return dataset.materialize(), rows
