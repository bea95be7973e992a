"""Library values ↔ protobuf messages. No logic beyond the mapping."""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf.message import Message
from numpy.typing import NDArray

from onnxplain.explainers import Family, OnnxClassifier
from onnxplain.explainers.methods import MethodSpec
from onnxplain.explainers.metrics import MetricSpec
from onnxplain.explainers.model import ModelInfo
from onnxplain.explainers.model.provenance import CONFIGURED, DEFAULTED, DETECTED, METADATA
from onnxplain.explainers.params import MethodParams
from onnxplain.v1 import explanation_service_pb2 as ex_pb2
from onnxplain.v1 import model_service_pb2 as model_pb2
from onnxplain.v1.wire import enum_short_name, from_tensor, to_tensor

from .repository import Entry, State

_STATES = {
    State.UNLOADED: model_pb2.MODEL_STATE_UNLOADED,
    State.LOADING: model_pb2.MODEL_STATE_LOADING,
    State.READY: model_pb2.MODEL_STATE_READY,
    State.FAILED: model_pb2.MODEL_STATE_FAILED,
}
_FAMILIES = {
    Family.PERTURBATION: ex_pb2.METHOD_FAMILY_PERTURBATION,
    Family.GRADIENT: ex_pb2.METHOD_FAMILY_GRADIENT,
    Family.CONTRASTIVE: ex_pb2.METHOD_FAMILY_CONTRASTIVE,
}
_SOURCES = {
    CONFIGURED: model_pb2.SETTING_SOURCE_CONFIGURED,
    METADATA: model_pb2.SETTING_SOURCE_METADATA,
    DETECTED: model_pb2.SETTING_SOURCE_DETECTED,
    DEFAULTED: model_pb2.SETTING_SOURCE_DEFAULTED,
}
PARAMS_ONEOF = "params"


def model_info(entry: Entry) -> model_pb2.ModelInfo:
    message = model_pb2.ModelInfo(name=entry.name, state=_STATES[entry.state], error=entry.error)
    if entry.classifier is not None:
        fill_model_info(message, entry.classifier.info)
    elif entry.companion is not None:  # not a classifier: no input/labels to describe, what it maps says it
        companion = entry.companion
        message.description = f"companion model {companion.describe()}: {companion.config.description}".rstrip(": ")
    return message


def fill_layers(message: model_pb2.ModelInfo, classifier: OnnxClassifier) -> None:
    """Candidate CAM layers and the default one (runs the model once, the first time)."""
    for layer in classifier.layers():
        message.layers.add(name=layer.name, shape=list(layer.shape), op_type=layer.op_type)
    message.cam_layer = classifier.cam_layer or ""


def fill_model_info(message: model_pb2.ModelInfo, info: ModelInfo) -> None:
    config, pre = info.config, info.config.preprocessing
    input_shape = (
        [-1, info.channels, info.height, info.width] if info.layout == "NCHW" else [-1, info.height, info.width, info.channels]
    )
    message.description = config.description
    message.input.CopyFrom(model_pb2.TensorSpec(name=info.input_name, shape=input_shape, datatype=info.input_datatype))
    message.output.CopyFrom(model_pb2.TensorSpec(name=info.output_name, shape=[-1, info.num_classes], datatype="FP32"))
    message.layout = model_pb2.LAYOUT_NCHW if info.layout == "NCHW" else model_pb2.LAYOUT_NHWC
    message.output_kind = (
        model_pb2.OUTPUT_KIND_LOGITS if info.output_kind == "logits" else model_pb2.OUTPUT_KIND_PROBABILITIES
    )
    message.num_classes = info.num_classes
    message.labels.extend(info.labels)
    message.preprocessing.CopyFrom(
        model_pb2.Preprocessing(
            resize=pre.resize or 0,
            height=info.height,
            width=info.width,
            channel_order=pre.channel_order,
            scale=pre.scale,
            mean=list(pre.mean),
            std=list(pre.std),
            resize_mode=pre.mode,
            interpolation=pre.interpolation,
            crop_pct=pre.crop_pct or 0.0,
        )
    )
    message.providers.extend(info.providers)
    message.max_batch = info.max_batch
    message.gradient_max_batch = info.gradient_max_batch
    message.batch_mode = getattr(model_pb2, f"BATCH_MODE_{info.batch_mode.upper()}")
    message.opset = info.opset
    for setting, origin in info.provenance.items():
        message.provenance.add(setting=setting, source=_SOURCES[origin.source], detail=origin.detail,
                               value=setting_value(info, setting))
    message.warnings.extend(info.warnings)


def setting_value(info: ModelInfo, setting: str) -> str:
    """The value of a provenance ``setting`` of ``info`` as short text (what `onnxplain predict` prints)."""
    config, pre = info.config, info.config.preprocessing
    values = {
        "layout": info.layout, "output": info.output_name, "output_kind": info.output_kind,
        "labels": f"{len(info.labels)} labels: {', '.join(info.labels[:3])}{', ...' if len(info.labels) > 3 else ''}",
        "cam_layer": config.cam_layer or "(chosen on first use)", "batch_mode": info.batch_mode,
        "max_batch": info.max_batch, "gradient_max_batch": info.gradient_max_batch,
        "image_shape": (info.channels, info.height, info.width), "preprocessing.resize_mode": pre.mode,
        "opset": info.opset, "inputs": info.input_name, "zipmap": "read as probabilities",
    }
    value = values[setting] if setting in values else getattr(pre, setting.removeprefix("preprocessing."), "")
    if isinstance(value, tuple):
        return "[" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) + "]"
    return "" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))


def params_field(method: str) -> str:
    """Name of the ExplainRequest.params oneof field for ``method`` ('' when it has none)."""
    fields = ex_pb2.ExplainRequest.DESCRIPTOR.oneofs_by_name[PARAMS_ONEOF].fields
    return method if any(f.name == method for f in fields) else ""


def method_info(spec: MethodSpec) -> ex_pb2.MethodInfo:
    message = ex_pb2.MethodInfo(
        name=spec.name,
        family=_FAMILIES[spec.family],
        black_box=spec.black_box,
        summary=spec.summary,
        citation=spec.citation,
        reference=spec.citation,  # deprecated in the contract; filled for existing clients
        params_field=params_field(spec.name),
    )
    fill_parameters(message.parameters, spec.params)
    return message


def fill_parameters(parameters: Any, params: type[MethodParams]) -> None:
    """Append a ParameterInfo (type, default, bounds, choices) per parameter of ``params`` to ``parameters``."""
    for p in params.describe():
        default = ",".join(f"{v:g}" for v in p.default) if isinstance(p.default, tuple) else str(p.default)
        info = parameters.add(name=p.name, type=p.kind, default_value=default, description=p.doc)
        if p.low is not None:
            info.minimum = p.low
        if p.high is not None:
            info.maximum = p.high
        info.choices.extend(p.choices or ())


def metric_info(spec: MetricSpec) -> ex_pb2.MetricInfo:
    message = ex_pb2.MetricInfo(name=spec.name, summary=spec.summary, higher_is_better=spec.higher_is_better,
                                citation=spec.citation, reexplains=spec.reexplains)
    fill_parameters(message.parameters, spec.params)
    return message


def params_from_proto(message: Message) -> dict[str, Any]:
    """Set fields of a typed params message → library keyword arguments.

    Enums map to the lower-case value name after the enum's prefix (BASELINE_BLUR → "blur");
    the zero (_UNSPECIFIED) value and unset optional fields mean "the method's default".
    """
    values: dict[str, Any] = {}
    for field, value in message.ListFields():
        if field.enum_type is not None:
            if value == 0:
                continue
            values[field.name] = enum_short_name(field.enum_type, value)
        elif field.message_type is not None and field.message_type.full_name == "onnxplain.v1.Tensor":
            values[field.name] = from_tensor(value, field=f"params.{field.name}")
        elif field.is_repeated:
            values[field.name] = tuple(value)
        else:
            values[field.name] = value
    return values


def encode_heatmaps(heatmaps: NDArray[np.float32], datatype: int) -> Any:
    """Heatmaps [T, H, W] float32 → Tensor in the requested datatype (UINT8: per-target min-max)."""
    if datatype == ex_pb2.HEATMAP_DATATYPE_FP16:
        return to_tensor(heatmaps.astype(np.float16))
    if datatype == ex_pb2.HEATMAP_DATATYPE_UINT8:
        low = np.nanmin(heatmaps, axis=(1, 2), keepdims=True)
        span = np.nanmax(heatmaps, axis=(1, 2), keepdims=True) - low
        scaled = np.nan_to_num((heatmaps - low) / np.where(span > 0, span, 1.0)) * 255
        return to_tensor(np.rint(scaled).astype(np.uint8))
    return to_tensor(heatmaps.astype(np.float32))
