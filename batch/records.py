"""The rows a batch job writes: one per (image, target), or one error row per image that failed.

Columns (Parquet, one file per written block):

========== ===================================================================================
path       the image's identity in the source (absolute file path, or the Parquet's ``path``)
model      model name;  method: method name;  params: canonical JSON of the method's parameters,
           the seed and the target choice — with ``path`` and ``method`` the key resume skips on
target     explained class index (null on an error row);  label: its label
score      the objective's value on the unperturbed image (float32)
heatmap    [height × width] in model-input pixels: float16 values, flattened row-major
           (``heatmap_format="fp16"``), or a 16-bit grayscale PNG of the map scaled linearly
           from ``heatmap_min`` (0) to ``heatmap_max`` (65535) (``"png"``) — see :func:`heatmap`
forward    model evaluations the image cost (per image, repeated on each of its target rows)
backward   backward passes, likewise;  seconds: wall time of the image on its worker
error      ``"Type: message"`` when the image failed, else null — one bad image never ends the job
run        the id of the job that wrote the row
========== ===================================================================================
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

HEATMAP_FORMATS = ("fp16", "png")


def schema(heatmap_format: str) -> pa.Schema:
    """The result schema; the ``heatmap`` column's type depends on ``heatmap_format`` (see the module)."""
    if heatmap_format not in HEATMAP_FORMATS:
        raise ValueError(f"heatmap_format {heatmap_format!r}; allowed: {', '.join(HEATMAP_FORMATS)}")
    heatmap = pa.list_(pa.float16()) if heatmap_format == "fp16" else pa.binary()
    return pa.schema([
        ("path", pa.string()), ("model", pa.string()), ("method", pa.string()), ("params", pa.string()),
        ("target", pa.int32()), ("label", pa.string()), ("score", pa.float32()),
        ("heatmap", heatmap), ("height", pa.int32()), ("width", pa.int32()),
        ("heatmap_min", pa.float32()), ("heatmap_max", pa.float32()),
        ("forward", pa.int64()), ("backward", pa.int64()), ("seconds", pa.float64()),
        ("error", pa.string()), ("run", pa.string()),
    ])


def params_key(params: Mapping[str, Any], *, seed: int, classes: Sequence[int] | None, top_k: int) -> str:
    """Canonical JSON of everything besides the image that decides a row's result."""
    target = {"classes": sorted(classes)} if classes else {"top_k": top_k}
    return json.dumps({"params": dict(params), "seed": seed, **target}, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class TargetMap:
    """One explained target of one image: ``heatmap`` float32 [H, W]."""

    target: int
    label: str
    score: float
    heatmap: NDArray[np.floating]


@dataclass(frozen=True)
class ImageOutcome:
    """What a backend returns for one image: its targets, or the error that stopped it."""

    targets: tuple[TargetMap, ...] = ()
    forward: int = 0
    backward: int = 0
    seconds: float = 0.0
    error: str | None = None


def encode_heatmap(heatmap: NDArray[np.floating], heatmap_format: str) -> list[float] | bytes:
    """[H, W] → the ``heatmap`` cell: float16 values, or a 16-bit PNG scaled from its min to its max."""
    if heatmap_format == "fp16":
        return np.asarray(heatmap, np.float16).ravel()
    from PIL import Image

    low, high = float(heatmap.min()), float(heatmap.max())
    scaled = (np.asarray(heatmap, np.float64) - low) / ((high - low) or 1.0)
    buffer = io.BytesIO()
    Image.fromarray(np.round(scaled * 65535).astype(np.uint16)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def heatmap(row: Mapping[str, Any]) -> NDArray[np.float32]:
    """A result row (a dict, a pandas row) → its heatmap float32 [height, width].

    Raises:
        ValueError: an error row (it has no heatmap).
    """
    cell, error = row["heatmap"], row["error"]
    if cell is None or isinstance(error, str):  # pandas reads a null string as None or NaN
        raise ValueError(f"{row['path']}: an error row has no heatmap ({row['error']})")
    shape = (int(row["height"]), int(row["width"]))
    if isinstance(cell, bytes | bytearray):
        from PIL import Image

        scaled = np.asarray(Image.open(io.BytesIO(cell)), np.float64) / 65535
        low, high = float(row["heatmap_min"]), float(row["heatmap_max"])
        return (low + scaled * (high - low)).astype(np.float32).reshape(shape)
    return np.asarray(cell, np.float32).reshape(shape)


def rows(path: str, outcome: ImageOutcome, *, model: str, method: str, params: str, run: str,
         heatmap_format: str) -> list[dict[str, Any]]:
    """The result rows of one image: one per target, or a single error row."""
    common = {"path": path, "model": model, "method": method, "params": params, "forward": outcome.forward,
              "backward": outcome.backward, "seconds": outcome.seconds, "error": outcome.error, "run": run}
    if outcome.error is not None:
        return [{**common, "target": None, "label": None, "score": None, "heatmap": None, "height": None,
                 "width": None, "heatmap_min": None, "heatmap_max": None}]
    return [{**common, "target": t.target, "label": t.label, "score": t.score,
             "heatmap": encode_heatmap(t.heatmap, heatmap_format), "height": t.heatmap.shape[0],
             "width": t.heatmap.shape[1], "heatmap_min": float(np.min(t.heatmap)),
             "heatmap_max": float(np.max(t.heatmap))} for t in outcome.targets]
