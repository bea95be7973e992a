from onnxplain.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_STATE_UNSPECIFIED: _ClassVar[ModelState]
    MODEL_STATE_UNLOADED: _ClassVar[ModelState]
    MODEL_STATE_LOADING: _ClassVar[ModelState]
    MODEL_STATE_READY: _ClassVar[ModelState]
    MODEL_STATE_FAILED: _ClassVar[ModelState]

class Layout(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LAYOUT_UNSPECIFIED: _ClassVar[Layout]
    LAYOUT_NCHW: _ClassVar[Layout]
    LAYOUT_NHWC: _ClassVar[Layout]

class OutputKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_KIND_UNSPECIFIED: _ClassVar[OutputKind]
    OUTPUT_KIND_LOGITS: _ClassVar[OutputKind]
    OUTPUT_KIND_PROBABILITIES: _ClassVar[OutputKind]

class BatchMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BATCH_MODE_UNSPECIFIED: _ClassVar[BatchMode]
    BATCH_MODE_DYNAMIC: _ClassVar[BatchMode]
    BATCH_MODE_REWRITTEN: _ClassVar[BatchMode]
    BATCH_MODE_PER_SAMPLE: _ClassVar[BatchMode]

class SettingSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SETTING_SOURCE_UNSPECIFIED: _ClassVar[SettingSource]
    SETTING_SOURCE_CONFIGURED: _ClassVar[SettingSource]
    SETTING_SOURCE_METADATA: _ClassVar[SettingSource]
    SETTING_SOURCE_DETECTED: _ClassVar[SettingSource]
    SETTING_SOURCE_DEFAULTED: _ClassVar[SettingSource]
MODEL_STATE_UNSPECIFIED: ModelState
MODEL_STATE_UNLOADED: ModelState
MODEL_STATE_LOADING: ModelState
MODEL_STATE_READY: ModelState
MODEL_STATE_FAILED: ModelState
LAYOUT_UNSPECIFIED: Layout
LAYOUT_NCHW: Layout
LAYOUT_NHWC: Layout
OUTPUT_KIND_UNSPECIFIED: OutputKind
OUTPUT_KIND_LOGITS: OutputKind
OUTPUT_KIND_PROBABILITIES: OutputKind
BATCH_MODE_UNSPECIFIED: BatchMode
BATCH_MODE_DYNAMIC: BatchMode
BATCH_MODE_REWRITTEN: BatchMode
BATCH_MODE_PER_SAMPLE: BatchMode
SETTING_SOURCE_UNSPECIFIED: SettingSource
SETTING_SOURCE_CONFIGURED: SettingSource
SETTING_SOURCE_METADATA: SettingSource
SETTING_SOURCE_DETECTED: SettingSource
SETTING_SOURCE_DEFAULTED: SettingSource

class TensorSpec(_message.Message):
    __slots__ = ("name", "shape", "datatype")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATATYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    datatype: str
    def __init__(self, name: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., datatype: _Optional[str] = ...) -> None: ...

class Preprocessing(_message.Message):
    __slots__ = ("resize", "height", "width", "channel_order", "scale", "mean", "std", "resize_mode", "interpolation", "crop_pct")
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_ORDER_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    RESIZE_MODE_FIELD_NUMBER: _ClassVar[int]
    INTERPOLATION_FIELD_NUMBER: _ClassVar[int]
    CROP_PCT_FIELD_NUMBER: _ClassVar[int]
    resize: int
    height: int
    width: int
    channel_order: str
    scale: float
    mean: _containers.RepeatedScalarFieldContainer[float]
    std: _containers.RepeatedScalarFieldContainer[float]
    resize_mode: str
    interpolation: str
    crop_pct: float
    def __init__(self, resize: _Optional[int] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., channel_order: _Optional[str] = ..., scale: _Optional[float] = ..., mean: _Optional[_Iterable[float]] = ..., std: _Optional[_Iterable[float]] = ..., resize_mode: _Optional[str] = ..., interpolation: _Optional[str] = ..., crop_pct: _Optional[float] = ...) -> None: ...

class SettingOrigin(_message.Message):
    __slots__ = ("setting", "source", "detail", "value")
    SETTING_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    setting: str
    source: SettingSource
    detail: str
    value: str
    def __init__(self, setting: _Optional[str] = ..., source: _Optional[_Union[SettingSource, str]] = ..., detail: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "state", "error", "description", "input", "output", "layout", "output_kind", "num_classes", "labels", "preprocessing", "providers", "max_batch", "batch_mode", "opset", "layers", "cam_layer", "gradient_max_batch", "provenance", "warnings")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_KIND_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSING_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    BATCH_MODE_FIELD_NUMBER: _ClassVar[int]
    OPSET_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    CAM_LAYER_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: ModelState
    error: str
    description: str
    input: TensorSpec
    output: TensorSpec
    layout: Layout
    output_kind: OutputKind
    num_classes: int
    labels: _containers.RepeatedScalarFieldContainer[str]
    preprocessing: Preprocessing
    providers: _containers.RepeatedScalarFieldContainer[str]
    max_batch: int
    batch_mode: BatchMode
    opset: int
    layers: _containers.RepeatedCompositeFieldContainer[LayerInfo]
    cam_layer: str
    gradient_max_batch: int
    provenance: _containers.RepeatedCompositeFieldContainer[SettingOrigin]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[ModelState, str]] = ..., error: _Optional[str] = ..., description: _Optional[str] = ..., input: _Optional[_Union[TensorSpec, _Mapping]] = ..., output: _Optional[_Union[TensorSpec, _Mapping]] = ..., layout: _Optional[_Union[Layout, str]] = ..., output_kind: _Optional[_Union[OutputKind, str]] = ..., num_classes: _Optional[int] = ..., labels: _Optional[_Iterable[str]] = ..., preprocessing: _Optional[_Union[Preprocessing, _Mapping]] = ..., providers: _Optional[_Iterable[str]] = ..., max_batch: _Optional[int] = ..., batch_mode: _Optional[_Union[BatchMode, str]] = ..., opset: _Optional[int] = ..., layers: _Optional[_Iterable[_Union[LayerInfo, _Mapping]]] = ..., cam_layer: _Optional[str] = ..., gradient_max_batch: _Optional[int] = ..., provenance: _Optional[_Iterable[_Union[SettingOrigin, _Mapping]]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class LayerInfo(_message.Message):
    __slots__ = ("name", "shape", "op_type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    OP_TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    op_type: str
    def __init__(self, name: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., op_type: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: ModelInfo
    def __init__(self, model: _Optional[_Union[ModelInfo, _Mapping]] = ...) -> None: ...

class LoadModelRequest(_message.Message):
    __slots__ = ("name", "onnx_model", "config_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ONNX_MODEL_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    onnx_model: bytes
    config_json: str
    def __init__(self, name: _Optional[str] = ..., onnx_model: _Optional[bytes] = ..., config_json: _Optional[str] = ...) -> None: ...

class LoadModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: ModelInfo
    def __init__(self, model: _Optional[_Union[ModelInfo, _Mapping]] = ...) -> None: ...

class UnloadModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UnloadModelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("model", "image", "top_k")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    model: str
    image: _tensor_pb2.ImageInput
    top_k: int
    def __init__(self, model: _Optional[str] = ..., image: _Optional[_Union[_tensor_pb2.ImageInput, _Mapping]] = ..., top_k: _Optional[int] = ...) -> None: ...

class ClassScore(_message.Message):
    __slots__ = ("index", "label", "score", "probability")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    index: int
    label: str
    score: float
    probability: float
    def __init__(self, index: _Optional[int] = ..., label: _Optional[str] = ..., score: _Optional[float] = ..., probability: _Optional[float] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("model", "classes", "warnings")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    model: str
    classes: _containers.RepeatedCompositeFieldContainer[ClassScore]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., classes: _Optional[_Iterable[_Union[ClassScore, _Mapping]]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...
