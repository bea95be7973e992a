"""Per-model configuration: labels, preprocessing, and overrides of what is auto-detected.

On disk it is ``models/<name>/config.json`` beside ``model.onnx`` (all keys optional)::

    {
      "description": "EfficientNet-Lite0, ImageNet-1k",
      "labels": "labels.txt",
      "layout": "NCHW",                      # or "NHWC"; detected when absent
      "output_kind": "logits",               # or "probabilities"; detected when absent
      "output": "logits",                    # which output holds the class scores
      "preprocessing": {"resize": 256, "center_crop": 224, "channel_order": "RGB",
                        "scale": 1.0, "mean": [127, 127, 127], "std": [128, 128, 128]},
      "cam_layer": null,                     # default layer for CAM methods (tensor name)
      "max_batch": 32,                       # samples per onnxruntime run
      "gradient_max_batch": null,            # per gradient-graph run (forward + backward); max_batch when null
      "max_cache_bytes": 268435456           # compiled graph variants kept per model (LRU beyond it)
    }

A backward pass keeps every activation of its batch alive; on a CPU a smaller batch stays in cache,
so gradient graphs often run fastest at a few samples per run (the bundled EfficientNet-Lite0: 4,
against 16 for its forward passes; ``bench/run.py`` measures both).

Each distinct graph a request needs (a gradient graph per rule set, the model behind each RISE
grid or extremal mask step, each CAM layer exposed) is compiled once and kept while the model's
compiled variants stay within ``max_cache_bytes`` (default 256 MiB, estimated as each graph's
serialized size, a lower bound on its memory: see :mod:`explainers.model.session`); beyond it the
least recently used are dropped and rebuilt when asked again.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import InvalidArgument

LAYOUTS = ("NCHW", "NHWC")
OUTPUT_KINDS = ("logits", "probabilities")
CHANNEL_ORDERS = ("RGB", "BGR")
DEFAULT_MAX_CACHE_BYTES = 256 << 20  # ≈ 1 GB of onnxruntime memory: the estimate is 3–4× low
"""256 MiB of compiled graph variants per model, about 13 variants of the bundled EfficientNet-Lite0 (~19 MB each)."""


@dataclass(frozen=True, kw_only=True)
class Preprocessing:
    """Encoded image → model input tensor, in this order:

    1. decode, convert to RGB (or grayscale for 1-channel models), reorder to ``channel_order``;
    2. resize so the short side is ``resize`` (bilinear), or straight to the input size when None;
    3. centre-crop ``center_crop`` (defaults to the model's input size);
    4. ``(pixel · scale − mean) / std`` per channel, pixels in 0..255.
    """

    resize: int | None = None
    center_crop: int | None = None
    channel_order: str = "RGB"
    scale: float = 1.0
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if self.channel_order not in CHANNEL_ORDERS:
            raise InvalidArgument("preprocessing.channel_order", f"{self.channel_order!r}; allowed: RGB, BGR")
        for name in ("resize", "center_crop"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and value > 0):
                raise InvalidArgument(f"preprocessing.{name}", f"{value!r}; allowed: a positive integer or null")
        for name in ("mean", "std", "scale"):
            values = getattr(self, name)
            if not all(math.isfinite(float(v)) for v in (values if isinstance(values, tuple | list) else [values])):
                raise InvalidArgument(f"preprocessing.{name}", f"{values!r}; every value must be a finite number")
        if any(s == 0 for s in self.std):
            raise InvalidArgument("preprocessing.std", "must not contain 0")
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Everything optional: a bare ``model.onnx`` is served with detected settings."""

    description: str = ""
    labels: tuple[str, ...] | None = None
    layout: str | None = None
    output_kind: str | None = None
    output: str | None = None
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    cam_layer: str | None = None
    max_batch: int = 32
    gradient_max_batch: int | None = None
    max_cache_bytes: int = DEFAULT_MAX_CACHE_BYTES

    def __post_init__(self) -> None:
        if self.layout is not None and self.layout not in LAYOUTS:
            raise InvalidArgument("config.layout", f"{self.layout!r}; allowed: NCHW, NHWC")
        if self.output_kind is not None and self.output_kind not in OUTPUT_KINDS:
            raise InvalidArgument("config.output_kind", f"{self.output_kind!r}; allowed: logits, probabilities")
        if not (isinstance(self.max_batch, int) and 1 <= self.max_batch <= 4096):
            raise InvalidArgument("config.max_batch", f"{self.max_batch!r}; allowed: [1, 4096]")
        limit = self.gradient_max_batch
        if limit is not None and not (isinstance(limit, int) and 1 <= limit <= 4096):
            raise InvalidArgument("config.gradient_max_batch", f"{limit!r}; allowed: [1, 4096] or null")
        if not (isinstance(self.max_cache_bytes, int) and self.max_cache_bytes >= 0):
            raise InvalidArgument("config.max_cache_bytes", f"{self.max_cache_bytes!r}; allowed: an integer >= 0")

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, base_dir: Path | None = None) -> ModelConfig:
        """Parse a config mapping; ``labels`` may be a list or a file name relative to ``base_dir``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InvalidArgument(f"config.{unknown[0]}", f"unknown key; allowed: {', '.join(sorted(known))}")
        values = dict(raw)
        labels = values.get("labels")
        if isinstance(labels, str):
            if base_dir is None:
                raise InvalidArgument("config.labels", "a labels file needs a model directory")
            path = (base_dir / labels).resolve()
            if not path.is_relative_to(base_dir.resolve()):
                raise InvalidArgument("config.labels", f"{labels[:80]!r} is outside the model's folder; allowed: a file "
                                                       "name inside it")
            values["labels"] = read_labels(path)
        elif labels is not None:
            values["labels"] = tuple(str(label) for label in labels)
        if "preprocessing" in values:
            pre = values["preprocessing"] or {}
            pre_known = {f.name for f in fields(Preprocessing)}
            bad = sorted(set(pre) - pre_known)
            if bad:
                raise InvalidArgument(
                    f"config.preprocessing.{bad[0]}", f"unknown key; allowed: {', '.join(sorted(pre_known))}"
                )
            values["preprocessing"] = Preprocessing(**pre)
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | Path) -> ModelConfig:
        """Read a ``config.json``; a ``labels`` file name is relative to its folder."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidArgument("config", f"cannot read {path.name}: {exc}") from exc
        if not isinstance(raw, dict):
            raise InvalidArgument("config", f"{path.name} must hold a JSON object")
        return cls.from_dict(raw, base_dir=path.parent)


def read_labels(path: Path) -> tuple[str, ...]:
    """One label per line, line i naming class i."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidArgument("config.labels", f"cannot read labels file {path.name}: {exc}") from exc
    return tuple(line.strip() for line in lines if line.strip())
