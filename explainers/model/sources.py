"""Read what an export already says about itself, and merge it with the model's own config.

Sources, highest priority first (a setting is taken from the first that has it):

1. the model's config (``config.json``, an upload's ``config_json``): ``configured``;
2. what a serving layout says (Triton's ``config.pbtxt``: the server passes it in): ``metadata``;
3. the ONNX metadata key ``onnxplain.config``: a JSON object in config.json's schema;
4. a Hugging Face ``preprocessor_config.json`` beside the model (resize, crop, rescale, normalise);
5. a timm or transformers ``config.json`` beside the model (timm's ``pretrained_cfg`` and
   ``label_names``, transformers' ``id2label``): recognised by their keys, never parsed as ours;
6. a lone ``labels.txt`` beside the model (one label per line);
7. labels in ONNX ``metadata_props``: our key ``onnxplain.labels`` (a JSON list), then keys that
   exporters write — ``labels``, ``label_list``, ``class_names``, ``classes``, ``names`` (Ultralytics:
   a Python dict literal ``{0: 'cat', ...}``), ``id2label`` — as a JSON/Python list, an
   ``{index: label}`` dict, or one label per line.

Each source yields a :class:`Found`: a partial config in ``config.json``'s schema and its
:class:`~explainers.model.provenance.Origin`; :func:`merge` records, per dotted key, where the value
came from in :attr:`ModelConfig.origins`.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import onnx

from ..errors import InvalidArgument
from .config import ModelConfig, read_labels
from .provenance import CONFIGURED, METADATA, Origin

LABELS_FILE = "labels.txt"
HF_PREPROCESSOR_FILE = "preprocessor_config.json"
CONFIG_FILE = "config.json"
OUR_LABELS_KEY = "onnxplain.labels"
OUR_CONFIG_KEY = "onnxplain.config"
EXPORTER_LABEL_KEYS = ("labels", "label_list", "class_names", "classes", "names", "id2label")
PIL_FILTERS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
"""PIL's integer resample codes, as Hugging Face's ``resample`` stores them."""
_FOREIGN_CONFIG_KEYS = ("pretrained_cfg", "architecture", "architectures", "model_type", "id2label")


@dataclass(frozen=True)
class Found:
    """A partial config (``config.json``'s schema) read from one source."""

    origin: Origin
    values: Mapping[str, Any]


def merge(found: Iterable[Found | None]) -> ModelConfig:
    """One :class:`ModelConfig` from sources in priority order (first wins per dotted key), with origins.

    Raises:
        InvalidArgument: a merged value is invalid; the field is named.
    """
    values: dict[str, Any] = {}
    preprocessing: dict[str, Any] = {}
    origins: dict[str, Origin] = {}
    for source in found:
        if source is None:
            continue
        for key, value in source.values.items():
            if key == "preprocessing":
                for pre_key, pre_value in (value or {}).items():
                    if pre_key not in preprocessing:
                        preprocessing[pre_key] = pre_value
                        origins[f"preprocessing.{pre_key}"] = source.origin
            elif key not in values:
                values[key] = value
                origins[key] = source.origin
    if preprocessing:
        values["preprocessing"] = preprocessing
    config = ModelConfig.from_dict(values)
    return replace(config, origins=origins)


def read_sources(model: onnx.ModelProto, folders: Sequence[Path], *, configured: Mapping[str, Any] | None = None,
                 configured_detail: str = CONFIG_FILE, serving: Found | None = None) -> ModelConfig:
    """The model's config merged with everything its export and the files in ``folders`` say (module
    docstring; for each kind of file the first folder that has one wins: the model file's own first).

    ``configured`` is the model's own config mapping (already parsed, e.g. from ``config.json``, its
    labels a list); ``serving`` what a serving layout (Triton) says. A ``config.json`` that is a timm or
    transformers model config is read as metadata; callers pass onnxplain's own as ``configured``.
    """
    found: list[Found | None] = [Found(Origin(CONFIGURED, configured_detail), configured) if configured else None,
                                 serving, metadata_config(model)]
    for read in (hf_preprocessor, foreign_config, labels_file):
        found.append(next((f for f in map(read, folders) if f is not None), None))
    found.append(metadata_labels(model))
    return merge(found)


def is_foreign_config(raw: Mapping[str, Any]) -> bool:
    """A timm or transformers ``config.json`` (their keys), not onnxplain's."""
    return any(key in raw for key in _FOREIGN_CONFIG_KEYS)


# ------------------------------------------------------------------ ONNX metadata
def metadata_props(model: onnx.ModelProto) -> dict[str, str]:
    return {prop.key: prop.value for prop in model.metadata_props}


def metadata_config(model: onnx.ModelProto) -> Found | None:
    """The ``onnxplain.config`` metadata key: a JSON object in config.json's schema."""
    text = metadata_props(model).get(OUR_CONFIG_KEY)
    if text is None:
        return None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"metadata_props[{OUR_CONFIG_KEY!r}]", f"not valid JSON: {exc}") from exc
    if not isinstance(raw, dict) or isinstance(raw.get("labels"), str):
        raise InvalidArgument(f"metadata_props[{OUR_CONFIG_KEY!r}]",
                              "must be a JSON object; its labels, if any, a list")
    return Found(Origin(METADATA, f"metadata_props[{OUR_CONFIG_KEY!r}]"), raw)


def metadata_labels(model: onnx.ModelProto) -> Found | None:
    """Labels from ``metadata_props``: our key, then the exporters' keys (module docstring)."""
    props = metadata_props(model)
    for key in (OUR_LABELS_KEY, *EXPORTER_LABEL_KEYS):
        labels = parse_labels(props[key]) if key in props else None
        if labels:
            return Found(Origin(METADATA, f"metadata_props[{key!r}]"), {"labels": labels})
    return None


def parse_labels(text: str) -> list[str] | None:
    """A JSON or Python list, an ``{index: label}`` dict (indices 0..n-1), or one label per line; else None."""
    value: Any = None
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
            break
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    if isinstance(value, list | tuple) and value and all(isinstance(v, str | int | float) for v in value):
        return [str(v) for v in value]
    if isinstance(value, dict) and value:
        return labels_from_index_map(value)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines if len(lines) > 1 and value is None else None


def labels_from_index_map(mapping: Mapping[Any, Any]) -> list[str] | None:
    """``{0: 'cat', '1': 'dog'}`` → ``['cat', 'dog']``; None unless the keys are exactly 0..n-1."""
    try:
        indexed = {int(key): str(value) for key, value in mapping.items()}
    except (TypeError, ValueError):
        return None
    if sorted(indexed) != list(range(len(indexed))):
        return None
    return [indexed[i] for i in range(len(indexed))]


# ------------------------------------------------------------------ files beside the model
def confined(path: Path) -> Path:
    """``path`` resolved, if it stays in its folder: a symlink beside a model may not read files elsewhere.

    Raises:
        InvalidArgument: it resolves outside its folder.
    """
    resolved = path.resolve()
    if not resolved.is_relative_to(path.parent.resolve()):
        raise InvalidArgument(path.name, f"{path.name} resolves outside the model's folder; allowed: a file inside it")
    return resolved


def labels_file(folder: Path) -> Found | None:
    """A lone ``labels.txt`` (no config needs to name it)."""
    path = folder / LABELS_FILE
    if not path.is_file():
        return None
    return Found(Origin(METADATA, LABELS_FILE), {"labels": list(read_labels(confined(path)))})


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    path = confined(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidArgument(path.name, f"cannot read {path.name}: {exc}") from exc
    if not isinstance(raw, dict):
        raise InvalidArgument(path.name, f"{path.name} must hold a JSON object")
    return raw


def hf_preprocessor(folder: Path) -> Found | None:
    """A Hugging Face ``preprocessor_config.json`` (an image processor's saved settings)."""
    raw = _read_json(folder / HF_PREPROCESSOR_FILE)
    if raw is None:
        return None
    return Found(Origin(METADATA, HF_PREPROCESSOR_FILE), {"preprocessing": hf_preprocessing(raw)})


def hf_preprocessing(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Hugging Face image-processor keys → our ``preprocessing`` keys.

    ``do_resize``/``size`` (``{"shortest_edge": s}`` → short side s; ``{"height", "width"}`` → squash;
    an int → short side when a crop follows, else squash), ``crop_pct`` (ConvNeXt), ``resample`` (PIL
    codes), ``do_center_crop``/``crop_size``, ``do_rescale``/``rescale_factor`` (→ ``scale``),
    ``do_normalize``/``image_mean``/``image_std``. A ``do_*`` flag absent counts as true when its
    values are present, as in transformers' image processors.

    Raises:
        InvalidArgument: a value this mapping cannot express (named by its key).
    """
    pre: dict[str, Any] = {}
    crop = _hf_side(raw.get("crop_size"), "crop_size") if raw.get("do_center_crop", "crop_size" in raw) else None
    if crop is not None:
        pre["center_crop"] = crop
    if raw.get("do_resize", "size" in raw) and raw.get("size") is not None:
        size = raw["size"]
        if isinstance(size, dict) and "shortest_edge" in size:
            pre.update(resize_mode="short_side", resize=int(size["shortest_edge"]))
        elif isinstance(size, dict) and "height" in size and "width" in size:
            pre["resize_mode"] = "squash"
            if crop is not None:  # squash to height × width, then crop
                pre["resize"] = min(int(size["height"]), int(size["width"]))
        elif isinstance(size, int):
            pre.update(resize_mode="short_side" if crop is not None else "squash", resize=size)
        else:
            raise InvalidArgument(f"{HF_PREPROCESSOR_FILE}: size", f"{size!r}; allowed: an int, {{'shortest_edge'}} "
                                                                   "or {'height', 'width'}")
        if raw.get("crop_pct") is not None:
            pre["crop_pct"] = float(raw["crop_pct"])
            pre.pop("resize", None)
    if "resample" in raw:
        if raw["resample"] not in PIL_FILTERS:
            raise InvalidArgument(f"{HF_PREPROCESSOR_FILE}: resample", f"{raw['resample']!r}; allowed: PIL codes 0-5")
        pre["interpolation"] = PIL_FILTERS[raw["resample"]]
    if "do_rescale" in raw or "rescale_factor" in raw:
        pre["scale"] = float(raw.get("rescale_factor", 1 / 255)) if raw.get("do_rescale", True) else 1.0
    if "do_normalize" in raw or "image_mean" in raw:
        if raw.get("do_normalize", True):
            missing = [key for key in ("image_mean", "image_std") if key not in raw]
            if missing:
                raise InvalidArgument(f"{HF_PREPROCESSOR_FILE}: {missing[0]}", "do_normalize needs image_mean and "
                                      "image_std; give both, or set do_normalize to false")
            pre.update(mean=list(raw["image_mean"]), std=list(raw["image_std"]))
        else:
            pre.update(mean=[0.0], std=[1.0])
    return pre


def _hf_side(value: Any, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, dict) and value.get("height") == value.get("width") and value.get("height"):
        return int(value["height"])
    raise InvalidArgument(f"{HF_PREPROCESSOR_FILE}: {key}", f"{value!r}; allowed: an int or a square "
                                                            "{'height', 'width'}")


def foreign_config(folder: Path) -> Found | None:
    """A timm (``pretrained_cfg``, ``label_names``) or transformers (``id2label``) ``config.json``."""
    raw = _read_json(folder / CONFIG_FILE)
    if raw is None or not is_foreign_config(raw):
        return None
    values: dict[str, Any] = {}
    pretrained = raw.get("pretrained_cfg")
    if isinstance(pretrained, dict):
        values["preprocessing"] = timm_preprocessing(pretrained)
    labels = raw.get("label_names")
    if not labels and isinstance(raw.get("id2label"), dict):
        labels = labels_from_index_map(raw["id2label"])
    if labels:
        values["labels"] = [str(label) for label in labels]
    return Found(Origin(METADATA, f"{CONFIG_FILE} ({'timm' if pretrained else 'transformers'})"), values)


def timm_preprocessing(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """timm's ``pretrained_cfg`` (``crop_pct``, ``interpolation``, ``mean``/``std`` in 0..1) → our keys.

    timm's eval transform: resize the short side to ``floor(size / crop_pct)``, centre-crop, scale to
    0..1, normalise; ``crop_mode: squash`` squashes instead.
    """
    pre: dict[str, Any] = {"scale": 1 / 255}
    if cfg.get("crop_pct") is not None:
        pre["crop_pct"] = float(cfg["crop_pct"])
    pre["resize_mode"] = "squash" if cfg.get("crop_mode") == "squash" else "short_side"
    if cfg.get("interpolation") in ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"):
        pre["interpolation"] = cfg["interpolation"]
    if cfg.get("mean") is not None:
        pre["mean"] = list(cfg["mean"])
    if cfg.get("std") is not None:
        pre["std"] = list(cfg["std"])
    return pre
