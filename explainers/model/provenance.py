"""Where every model setting came from, so that nothing is guessed silently.

Each setting a classifier runs with (layout, output kind, score output, labels, every
preprocessing field, the CAM layer, the batch mode, ...) has an :class:`Origin`:

* ``configured`` — the model's config (``config.json``, an upload's ``config_json``, or a
  :class:`~explainers.model.config.ModelConfig` built in code);
* ``metadata`` — read from the export or the files beside it (ONNX ``metadata_props``, a lone
  ``labels.txt``, a Hugging Face ``preprocessor_config.json``, a timm/transformers ``config.json``,
  Triton's ``config.pbtxt``); ``detail`` names the file or key;
* ``detected`` — worked out from the graph or by running it (layout, output kind, batch mode);
* ``defaulted`` — nobody said, and a default was used.

A model whose preprocessing is entirely defaulted is still served, but every result carries
:func:`warnings`' text: a classifier fed 0–255 pixels it was never trained on answers confidently
and wrongly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CONFIGURED = "configured"
METADATA = "metadata"
DETECTED = "detected"
DEFAULTED = "defaulted"
SOURCES = (CONFIGURED, METADATA, DETECTED, DEFAULTED)

PREPROCESSING_SETTINGS = (
    "preprocessing.resize", "preprocessing.resize_mode", "preprocessing.interpolation", "preprocessing.center_crop",
    "preprocessing.crop_pct", "preprocessing.channel_order", "preprocessing.scale", "preprocessing.mean",
    "preprocessing.std",
)
"""The preprocessing fields, as dotted config keys."""


@dataclass(frozen=True)
class Origin:
    """Where one setting came from: ``source`` is one of :data:`SOURCES`; ``detail`` says which file,
    key or probe (e.g. ``"preprocessor_config.json"``, ``"metadata_props['names']"``)."""

    source: str
    detail: str = ""

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"origin source {self.source!r}; allowed: {', '.join(SOURCES)}")

    def __str__(self) -> str:
        return f"{self.source} ({self.detail})" if self.detail else self.source


DEFAULT = Origin(DEFAULTED)


def preprocessing_defaulted(provenance: Mapping[str, Origin]) -> bool:
    """True when no preprocessing field was configured or read from the export."""
    return all(provenance.get(name, DEFAULT).source == DEFAULTED for name in PREPROCESSING_SETTINGS)


PIXEL_VALUE_SETTINGS = ("preprocessing.scale", "preprocessing.mean", "preprocessing.std")


def warnings(provenance: Mapping[str, Origin], *, size: tuple[int, int]) -> tuple[str, ...]:
    """The warnings every predict/explain result of this model carries (empty when all is well): all of the
    preprocessing defaulted, or — the guess that matters most — the pixel values (scale, mean and std)."""
    if not preprocessing_defaulted(provenance):
        if all(provenance.get(name, DEFAULT).source == DEFAULTED for name in PIXEL_VALUE_SETTINGS):
            return ("the pixel values were defaulted: no scale, mean or std was configured or read from the export, "
                    "so images are fed as 0-255 pixels without normalisation; if the model was trained otherwise, "
                    "results may be confidently wrong. Set 'scale', 'mean' and 'std' in the model's preprocessing "
                    "(scale 1, mean 0, std 1 to confirm 0-255)",)
        return ()
    height, width = size
    return (
        f"preprocessing was defaulted: nothing (config.json, preprocessor_config.json, the model's metadata) says "
        f"how images were prepared for training, so photos are squashed to {width}x{height} and fed as 0-255 pixels "
        "without mean/std; results may be confidently wrong. Set 'preprocessing' in the model's config "
        "(README: Serving your own model)",
    )


_DETECTED_WHEN_ABSENT = {
    "layout": "from the input's shape and the ops it feeds",
    "output": "the float [batch, classes] output",
    "output_kind": "from the output's producer and a probe run",
    "cam_layer": "the last map larger than 1x1 that a global pooling reads",
}


def settings_provenance(config: Any, *, batch_mode: str, image_shape: tuple[int, int, int] | None) -> dict[str, Origin]:
    """The origin of every setting a classifier runs with.

    ``config`` is its :class:`~explainers.model.config.ModelConfig`: a key in ``config.origins`` keeps
    its recorded origin; a config built in code has no origins, so a value other than the default
    counts as ``configured``. What nobody set is ``detected`` (layout, score output, output kind, CAM
    layer, ``image_shape: "square"``, batch mode) or ``defaulted`` (labels, preprocessing, batch sizes).
    """
    defaults, pre_defaults = type(config)(), type(config.preprocessing)()

    def origin(key: str, value: Any, default: Any, absent: Origin) -> Origin:
        if key in config.origins:
            return config.origins[key]
        return Origin(CONFIGURED) if value != default else absent

    result = {
        key: origin(key, getattr(config, key), getattr(defaults, key),
                    Origin(DETECTED, _DETECTED_WHEN_ABSENT[key]) if key in _DETECTED_WHEN_ABSENT else DEFAULT)
        for key in ("layout", "output", "output_kind", "labels", "cam_layer", "max_batch", "gradient_max_batch")
    }
    for key in PREPROCESSING_SETTINGS:
        name = key.removeprefix("preprocessing.")
        result[key] = origin(key, getattr(config.preprocessing, name), getattr(pre_defaults, name), DEFAULT)
    if image_shape is not None:
        given = config.origins.get("image_shape", Origin(CONFIGURED))
        result["image_shape"] = Origin(DETECTED, "square") if config.image_shape == "square" else given
    result["batch_mode"] = Origin(DETECTED, f"{batch_mode}: a batch of 2 probed against two batches of 1")
    return result
