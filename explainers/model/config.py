"""Per-model configuration: labels, preprocessing, and overrides of what is auto-detected.

On disk it is ``models/<name>/config.json`` beside ``model.onnx`` (all keys optional)::

    {
      "description": "EfficientNet-Lite0, ImageNet-1k",
      "labels": "labels.txt",
      "layout": "NCHW",                      # or "NHWC"; detected when absent
      "output_kind": "logits",               # or "probabilities"; detected when absent
      "output": "logits",                    # which output holds the class scores
      "preprocessing": {"resize": 256, "center_crop": 224, "channel_order": "RGB",
                        "scale": 1.0, "mean": [127, 127, 127], "std": [128, 128, 128],
                        "resize_mode": "short_side", "interpolation": "bilinear", "crop_pct": null},
      "image_shape": null,                   # [H, W], [C, H, W] or "square": a rank-2/3 input that is an image
      "cam_layer": null,                     # default layer for CAM methods (tensor name)
      "max_batch": 32,                       # samples per onnxruntime run
      "gradient_max_batch": null,            # per gradient-graph run (forward + backward); max_batch when null
      "max_cache_bytes": 268435456           # compiled graph variants kept per model (LRU beyond it)
    }

Every key given is recorded as ``configured`` in :attr:`ModelConfig.origins`; what the export says
(labels in its metadata, a Hugging Face ``preprocessor_config.json``, ...) is merged in by
:mod:`~explainers.model.sources` and recorded as ``metadata`` (see :mod:`~explainers.model.provenance`).

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
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import InvalidArgument
from .provenance import CONFIGURED, Origin

LAYOUTS = ("NCHW", "NHWC")
OUTPUT_KINDS = ("logits", "probabilities")
CHANNEL_ORDERS = ("RGB", "BGR")
DEFAULT_MAX_CACHE_BYTES = 256 << 20  # ≈ 1 GB of onnxruntime memory: the estimate is 3–4× low
"""256 MiB of compiled graph variants per model, about 13 variants of the bundled EfficientNet-Lite0 (~19 MB each)."""
_CONFIGURED = Origin(CONFIGURED)
RESIZE_MODES = ("short_side", "squash", "none", "long_side_pad")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming", "antialias")
"""PIL's resampling filters by name (PIL and torchvision semantics: bilinear, bicubic, lanczos, box and
hamming antialias when shrinking); ``antialias`` is PIL's historic name for ``lanczos``."""


@dataclass(frozen=True, kw_only=True)
class Preprocessing:
    """Encoded image → model input tensor, in this order:

    1. decode, convert to RGB (or grayscale for 1-channel models), reorder to ``channel_order``;
    2. resize with the ``interpolation`` filter, by ``resize_mode`` (the model input is H × W):

       * ``short_side`` (the default when ``resize`` is set): the short side becomes ``resize``, or
         ``floor(min(H, W) / crop_pct)`` when only ``crop_pct`` is set (timm), keeping the aspect ratio;
       * ``squash`` (the default otherwise): straight to H × W, or to ``resize`` on the short side of a
         squashed, H:W-shaped image (e.g. 256×256, then a 224 crop);
       * ``none``: no resizing; the centre H × W (black padding where the photo is smaller);
       * ``long_side_pad``: the long side fits, the aspect ratio is kept, black bars pad the rest (letterbox);
    3. centre-crop to the model's input size (``center_crop``, when given, must equal its short side);
    4. ``(pixel · scale − mean) / std`` per channel, pixels in 0..255. ``mean`` and ``std`` are in the
       **model's channel order**: after the reorder of step 1, so for BGR they are [B, G, R].
    """

    resize: int | None = None
    center_crop: int | None = None
    channel_order: str = "RGB"
    scale: float = 1.0
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    resize_mode: str | None = None
    interpolation: str = "bilinear"
    crop_pct: float | None = None

    @property
    def mode(self) -> str:
        """``resize_mode``, or its default: ``short_side`` when ``resize`` or ``crop_pct`` is set, else ``squash``."""
        if self.resize_mode is not None:
            return self.resize_mode
        return "short_side" if self.resize is not None or self.crop_pct is not None else "squash"

    def __post_init__(self) -> None:
        if self.resize_mode is not None and self.resize_mode not in RESIZE_MODES:
            raise InvalidArgument("preprocessing.resize_mode", f"{self.resize_mode!r}; allowed: {', '.join(RESIZE_MODES)}")
        if self.interpolation not in INTERPOLATIONS:
            raise InvalidArgument("preprocessing.interpolation",
                                  f"{self.interpolation!r}; allowed: {', '.join(INTERPOLATIONS)}")
        if self.crop_pct is not None and not (isinstance(self.crop_pct, int | float) and 0 < self.crop_pct <= 1):
            raise InvalidArgument("preprocessing.crop_pct", f"{self.crop_pct!r}; allowed: (0, 1] or null")
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
    image_shape: tuple[int, ...] | str | None = None
    origins: Mapping[str, Origin] = field(default_factory=dict, compare=False, repr=False)
    """Where each setting given here came from, by dotted key (``"labels"``, ``"preprocessing.mean"``):
    filled by :meth:`from_dict` and :mod:`~explainers.model.sources`; a key absent here was not given."""

    def __post_init__(self) -> None:
        shape = self.image_shape
        if isinstance(shape, list | tuple):
            if not (len(shape) in (2, 3) and all(isinstance(d, int) and d > 0 for d in shape)):
                raise InvalidArgument("config.image_shape", f"{list(shape)!r}; allowed: [H, W], [C, H, W] or \"square\"")
            object.__setattr__(self, "image_shape", tuple(shape))
        elif shape is not None and shape != "square":
            raise InvalidArgument("config.image_shape", f"{shape!r}; allowed: [H, W], [C, H, W] or \"square\"")
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
    def from_dict(cls, raw: dict[str, Any], *, base_dir: Path | None = None,
                  origin: Origin = _CONFIGURED) -> ModelConfig:
        """Parse a config mapping; ``labels`` may be a list or a file name relative to ``base_dir``.
        Every key given is recorded in :attr:`origins` as ``origin``.

        Raises:
            InvalidArgument: a value is out of range, or keys are unknown (all of them are named).
        """
        known = {f.name for f in fields(cls)} - {"origins"}
        _refuse_unknown("config", set(raw) - known, known)
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
            _refuse_unknown("config.preprocessing", set(pre) - {f.name for f in fields(Preprocessing)},
                            {f.name for f in fields(Preprocessing)})
            values["preprocessing"] = Preprocessing(**pre)
        given = [f"preprocessing.{key}" for key in raw.get("preprocessing") or {}]
        given += [key for key in raw if key != "preprocessing"]
        return cls(**values, origins={key: origin for key in given})

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


def _refuse_unknown(where: str, unknown: set[str], known: set[str]) -> None:
    """One error naming every unknown key at once (a typo rarely comes alone)."""
    if not unknown:
        return
    names = sorted(unknown)
    field_name = f"{where}.{names[0]}" if len(names) == 1 else where
    listing = ", ".join(repr(name) for name in names)
    raise InvalidArgument(field_name, f"unknown key{'s' if len(names) > 1 else ''} {listing}; "
                                      f"allowed: {', '.join(sorted(known))}")


def read_labels(path: Path) -> tuple[str, ...]:
    """One label per line, line i naming class i."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidArgument("config.labels", f"cannot read labels file {path.name}: {exc}") from exc
    return tuple(line.strip() for line in lines if line.strip())
