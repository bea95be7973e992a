from onnxplain.v1 import method_params_pb2 as _method_params_pb2
from onnxplain.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ScoreSpace(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCORE_SPACE_UNSPECIFIED: _ClassVar[ScoreSpace]
    SCORE_SPACE_PROBABILITY: _ClassVar[ScoreSpace]

class ContrastLoss(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONTRAST_LOSS_UNSPECIFIED: _ClassVar[ContrastLoss]
    CONTRAST_LOSS_DIFFERENCE: _ClassVar[ContrastLoss]
    CONTRAST_LOSS_CROSS_ENTROPY: _ClassVar[ContrastLoss]

class HeatmapDatatype(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEATMAP_DATATYPE_UNSPECIFIED: _ClassVar[HeatmapDatatype]
    HEATMAP_DATATYPE_FP32: _ClassVar[HeatmapDatatype]
    HEATMAP_DATATYPE_FP16: _ClassVar[HeatmapDatatype]
    HEATMAP_DATATYPE_UINT8: _ClassVar[HeatmapDatatype]

class MethodFamily(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METHOD_FAMILY_UNSPECIFIED: _ClassVar[MethodFamily]
    METHOD_FAMILY_PERTURBATION: _ClassVar[MethodFamily]
    METHOD_FAMILY_GRADIENT: _ClassVar[MethodFamily]
    METHOD_FAMILY_CONTRASTIVE: _ClassVar[MethodFamily]
SCORE_SPACE_UNSPECIFIED: ScoreSpace
SCORE_SPACE_PROBABILITY: ScoreSpace
CONTRAST_LOSS_UNSPECIFIED: ContrastLoss
CONTRAST_LOSS_DIFFERENCE: ContrastLoss
CONTRAST_LOSS_CROSS_ENTROPY: ContrastLoss
HEATMAP_DATATYPE_UNSPECIFIED: HeatmapDatatype
HEATMAP_DATATYPE_FP32: HeatmapDatatype
HEATMAP_DATATYPE_FP16: HeatmapDatatype
HEATMAP_DATATYPE_UINT8: HeatmapDatatype
METHOD_FAMILY_UNSPECIFIED: MethodFamily
METHOD_FAMILY_PERTURBATION: MethodFamily
METHOD_FAMILY_GRADIENT: MethodFamily
METHOD_FAMILY_CONTRASTIVE: MethodFamily

class Target(_message.Message):
    __slots__ = ("class_indices", "top_k", "contrast_class", "class_weights", "score_space", "contrast_loss")
    CLASS_INDICES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    CONTRAST_CLASS_FIELD_NUMBER: _ClassVar[int]
    CLASS_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    SCORE_SPACE_FIELD_NUMBER: _ClassVar[int]
    CONTRAST_LOSS_FIELD_NUMBER: _ClassVar[int]
    class_indices: _containers.RepeatedScalarFieldContainer[int]
    top_k: int
    contrast_class: int
    class_weights: _tensor_pb2.Tensor
    score_space: ScoreSpace
    contrast_loss: ContrastLoss
    def __init__(self, class_indices: _Optional[_Iterable[int]] = ..., top_k: _Optional[int] = ..., contrast_class: _Optional[int] = ..., class_weights: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., score_space: _Optional[_Union[ScoreSpace, str]] = ..., contrast_loss: _Optional[_Union[ContrastLoss, str]] = ...) -> None: ...

class OutputOptions(_message.Message):
    __slots__ = ("heatmap_datatype", "original_grid", "overlay_png", "partial_interval_ms")
    HEATMAP_DATATYPE_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_GRID_FIELD_NUMBER: _ClassVar[int]
    OVERLAY_PNG_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    heatmap_datatype: HeatmapDatatype
    original_grid: bool
    overlay_png: bool
    partial_interval_ms: int
    def __init__(self, heatmap_datatype: _Optional[_Union[HeatmapDatatype, str]] = ..., original_grid: _Optional[bool] = ..., overlay_png: _Optional[bool] = ..., partial_interval_ms: _Optional[int] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("request_id", "model", "method", "image", "target", "seed", "output", "occlusion", "rise", "lime", "score_cam", "extremal_perturbation", "cam", "grad_cam", "guided_grad_cam", "grad_cam_plus_plus", "integrated_gradients", "smoothgrad", "deeplift", "meaningful_perturbation", "cem", "cdeepex")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    OCCLUSION_FIELD_NUMBER: _ClassVar[int]
    RISE_FIELD_NUMBER: _ClassVar[int]
    LIME_FIELD_NUMBER: _ClassVar[int]
    SCORE_CAM_FIELD_NUMBER: _ClassVar[int]
    EXTREMAL_PERTURBATION_FIELD_NUMBER: _ClassVar[int]
    CAM_FIELD_NUMBER: _ClassVar[int]
    GRAD_CAM_FIELD_NUMBER: _ClassVar[int]
    GUIDED_GRAD_CAM_FIELD_NUMBER: _ClassVar[int]
    GRAD_CAM_PLUS_PLUS_FIELD_NUMBER: _ClassVar[int]
    INTEGRATED_GRADIENTS_FIELD_NUMBER: _ClassVar[int]
    SMOOTHGRAD_FIELD_NUMBER: _ClassVar[int]
    DEEPLIFT_FIELD_NUMBER: _ClassVar[int]
    MEANINGFUL_PERTURBATION_FIELD_NUMBER: _ClassVar[int]
    CEM_FIELD_NUMBER: _ClassVar[int]
    CDEEPEX_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    method: str
    image: _tensor_pb2.ImageInput
    target: Target
    seed: int
    output: OutputOptions
    occlusion: _method_params_pb2.OcclusionParams
    rise: _method_params_pb2.RiseParams
    lime: _method_params_pb2.LimeParams
    score_cam: _method_params_pb2.ScoreCamParams
    extremal_perturbation: _method_params_pb2.ExtremalPerturbationParams
    cam: _method_params_pb2.LayerParams
    grad_cam: _method_params_pb2.LayerParams
    guided_grad_cam: _method_params_pb2.LayerParams
    grad_cam_plus_plus: _method_params_pb2.LayerParams
    integrated_gradients: _method_params_pb2.IntegratedGradientsParams
    smoothgrad: _method_params_pb2.SmoothGradParams
    deeplift: _method_params_pb2.DeepLiftParams
    meaningful_perturbation: _method_params_pb2.MeaningfulPerturbationParams
    cem: _method_params_pb2.CemParams
    cdeepex: _method_params_pb2.CDeepExParams
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., method: _Optional[str] = ..., image: _Optional[_Union[_tensor_pb2.ImageInput, _Mapping]] = ..., target: _Optional[_Union[Target, _Mapping]] = ..., seed: _Optional[int] = ..., output: _Optional[_Union[OutputOptions, _Mapping]] = ..., occlusion: _Optional[_Union[_method_params_pb2.OcclusionParams, _Mapping]] = ..., rise: _Optional[_Union[_method_params_pb2.RiseParams, _Mapping]] = ..., lime: _Optional[_Union[_method_params_pb2.LimeParams, _Mapping]] = ..., score_cam: _Optional[_Union[_method_params_pb2.ScoreCamParams, _Mapping]] = ..., extremal_perturbation: _Optional[_Union[_method_params_pb2.ExtremalPerturbationParams, _Mapping]] = ..., cam: _Optional[_Union[_method_params_pb2.LayerParams, _Mapping]] = ..., grad_cam: _Optional[_Union[_method_params_pb2.LayerParams, _Mapping]] = ..., guided_grad_cam: _Optional[_Union[_method_params_pb2.LayerParams, _Mapping]] = ..., grad_cam_plus_plus: _Optional[_Union[_method_params_pb2.LayerParams, _Mapping]] = ..., integrated_gradients: _Optional[_Union[_method_params_pb2.IntegratedGradientsParams, _Mapping]] = ..., smoothgrad: _Optional[_Union[_method_params_pb2.SmoothGradParams, _Mapping]] = ..., deeplift: _Optional[_Union[_method_params_pb2.DeepLiftParams, _Mapping]] = ..., meaningful_perturbation: _Optional[_Union[_method_params_pb2.MeaningfulPerturbationParams, _Mapping]] = ..., cem: _Optional[_Union[_method_params_pb2.CemParams, _Mapping]] = ..., cdeepex: _Optional[_Union[_method_params_pb2.CDeepExParams, _Mapping]] = ...) -> None: ...

class Accepted(_message.Message):
    __slots__ = ("model", "method", "seed", "planned_evaluations", "targets", "parameters", "warnings")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PLANNED_EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    model: str
    method: str
    seed: int
    planned_evaluations: int
    targets: _containers.RepeatedCompositeFieldContainer[TargetInfo]
    parameters: _containers.ScalarMap[str, str]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., method: _Optional[str] = ..., seed: _Optional[int] = ..., planned_evaluations: _Optional[int] = ..., targets: _Optional[_Iterable[_Union[TargetInfo, _Mapping]]] = ..., parameters: _Optional[_Mapping[str, str]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class TargetInfo(_message.Message):
    __slots__ = ("class_index", "label", "contrast_class", "contrast_loss")
    CLASS_INDEX_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CONTRAST_CLASS_FIELD_NUMBER: _ClassVar[int]
    CONTRAST_LOSS_FIELD_NUMBER: _ClassVar[int]
    class_index: int
    label: str
    contrast_class: int
    contrast_loss: ContrastLoss
    def __init__(self, class_index: _Optional[int] = ..., label: _Optional[str] = ..., contrast_class: _Optional[int] = ..., contrast_loss: _Optional[_Union[ContrastLoss, str]] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("done", "total", "partial_heatmaps")
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_HEATMAPS_FIELD_NUMBER: _ClassVar[int]
    done: int
    total: int
    partial_heatmaps: _tensor_pb2.Tensor
    def __init__(self, done: _Optional[int] = ..., total: _Optional[int] = ..., partial_heatmaps: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class TargetResult(_message.Message):
    __slots__ = ("target", "score", "heatmap_min", "heatmap_max", "overlay_png")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    HEATMAP_MIN_FIELD_NUMBER: _ClassVar[int]
    HEATMAP_MAX_FIELD_NUMBER: _ClassVar[int]
    OVERLAY_PNG_FIELD_NUMBER: _ClassVar[int]
    target: TargetInfo
    score: float
    heatmap_min: float
    heatmap_max: float
    overlay_png: bytes
    def __init__(self, target: _Optional[_Union[TargetInfo, _Mapping]] = ..., score: _Optional[float] = ..., heatmap_min: _Optional[float] = ..., heatmap_max: _Optional[float] = ..., overlay_png: _Optional[bytes] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("heatmaps", "original_heatmaps", "targets", "forward_evaluations", "backward_evaluations", "extras", "elapsed_seconds", "tensors", "warnings")
    class ExtrasEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class TensorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _tensor_pb2.Tensor
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...
    HEATMAPS_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_HEATMAPS_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    FORWARD_EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    BACKWARD_EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    EXTRAS_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    heatmaps: _tensor_pb2.Tensor
    original_heatmaps: _tensor_pb2.Tensor
    targets: _containers.RepeatedCompositeFieldContainer[TargetResult]
    forward_evaluations: int
    backward_evaluations: int
    extras: _containers.ScalarMap[str, float]
    elapsed_seconds: float
    tensors: _containers.MessageMap[str, _tensor_pb2.Tensor]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, heatmaps: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., original_heatmaps: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., targets: _Optional[_Iterable[_Union[TargetResult, _Mapping]]] = ..., forward_evaluations: _Optional[int] = ..., backward_evaluations: _Optional[int] = ..., extras: _Optional[_Mapping[str, float]] = ..., elapsed_seconds: _Optional[float] = ..., tensors: _Optional[_Mapping[str, _tensor_pb2.Tensor]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("request_id", "accepted", "progress", "result")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    accepted: Accepted
    progress: Progress
    result: Result
    def __init__(self, request_id: _Optional[str] = ..., accepted: _Optional[_Union[Accepted, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., result: _Optional[_Union[Result, _Mapping]] = ...) -> None: ...

class ListMethodsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ParameterInfo(_message.Message):
    __slots__ = ("name", "type", "default_value", "description", "minimum", "maximum", "choices")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MINIMUM_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_FIELD_NUMBER: _ClassVar[int]
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    default_value: str
    description: str
    minimum: float
    maximum: float
    choices: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., default_value: _Optional[str] = ..., description: _Optional[str] = ..., minimum: _Optional[float] = ..., maximum: _Optional[float] = ..., choices: _Optional[_Iterable[str]] = ...) -> None: ...

class MethodInfo(_message.Message):
    __slots__ = ("name", "family", "black_box", "summary", "reference", "parameters", "params_field", "citation")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    BLACK_BOX_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_FIELD_NUMBER: _ClassVar[int]
    CITATION_FIELD_NUMBER: _ClassVar[int]
    name: str
    family: MethodFamily
    black_box: bool
    summary: str
    reference: str
    parameters: _containers.RepeatedCompositeFieldContainer[ParameterInfo]
    params_field: str
    citation: str
    def __init__(self, name: _Optional[str] = ..., family: _Optional[_Union[MethodFamily, str]] = ..., black_box: _Optional[bool] = ..., summary: _Optional[str] = ..., reference: _Optional[str] = ..., parameters: _Optional[_Iterable[_Union[ParameterInfo, _Mapping]]] = ..., params_field: _Optional[str] = ..., citation: _Optional[str] = ...) -> None: ...

class ListMethodsResponse(_message.Message):
    __slots__ = ("methods",)
    METHODS_FIELD_NUMBER: _ClassVar[int]
    methods: _containers.RepeatedCompositeFieldContainer[MethodInfo]
    def __init__(self, methods: _Optional[_Iterable[_Union[MethodInfo, _Mapping]]] = ...) -> None: ...

class MetricRequest(_message.Message):
    __slots__ = ("metric", "parameters")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ParameterValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ParameterValue, _Mapping]] = ...) -> None: ...
    METRIC_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    metric: str
    parameters: _containers.MessageMap[str, ParameterValue]
    def __init__(self, metric: _Optional[str] = ..., parameters: _Optional[_Mapping[str, ParameterValue]] = ...) -> None: ...

class ParameterValue(_message.Message):
    __slots__ = ("number", "integer", "text", "flag", "numbers", "tensor")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    INTEGER_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FLAG_FIELD_NUMBER: _ClassVar[int]
    NUMBERS_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    number: float
    integer: int
    text: str
    flag: bool
    numbers: NumberList
    tensor: _tensor_pb2.Tensor
    def __init__(self, number: _Optional[float] = ..., integer: _Optional[int] = ..., text: _Optional[str] = ..., flag: _Optional[bool] = ..., numbers: _Optional[_Union[NumberList, _Mapping]] = ..., tensor: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class NumberList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("request_id", "explanation", "metrics")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    explanation: ExplainRequest
    metrics: _containers.RepeatedCompositeFieldContainer[MetricRequest]
    def __init__(self, request_id: _Optional[str] = ..., explanation: _Optional[_Union[ExplainRequest, _Mapping]] = ..., metrics: _Optional[_Iterable[_Union[MetricRequest, _Mapping]]] = ...) -> None: ...

class MetricPlan(_message.Message):
    __slots__ = ("metric", "parameters")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    METRIC_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    metric: str
    parameters: _containers.ScalarMap[str, str]
    def __init__(self, metric: _Optional[str] = ..., parameters: _Optional[_Mapping[str, str]] = ...) -> None: ...

class EvaluateAccepted(_message.Message):
    __slots__ = ("accepted", "metrics")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    accepted: Accepted
    metrics: _containers.RepeatedCompositeFieldContainer[MetricPlan]
    def __init__(self, accepted: _Optional[_Union[Accepted, _Mapping]] = ..., metrics: _Optional[_Iterable[_Union[MetricPlan, _Mapping]]] = ...) -> None: ...

class Curve(_message.Message):
    __slots__ = ("name", "x", "y", "x_label", "x_ticks", "y_label")
    NAME_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    X_LABEL_FIELD_NUMBER: _ClassVar[int]
    X_TICKS_FIELD_NUMBER: _ClassVar[int]
    Y_LABEL_FIELD_NUMBER: _ClassVar[int]
    name: str
    x: _containers.RepeatedScalarFieldContainer[float]
    y: _tensor_pb2.Tensor
    x_label: str
    x_ticks: _containers.RepeatedScalarFieldContainer[str]
    y_label: str
    def __init__(self, name: _Optional[str] = ..., x: _Optional[_Iterable[float]] = ..., y: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., x_label: _Optional[str] = ..., x_ticks: _Optional[_Iterable[str]] = ..., y_label: _Optional[str] = ...) -> None: ...

class MetricResult(_message.Message):
    __slots__ = ("metric", "values", "higher_is_better", "curves", "extras", "forward_evaluations", "backward_evaluations", "elapsed_seconds")
    class ExtrasEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    METRIC_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    HIGHER_IS_BETTER_FIELD_NUMBER: _ClassVar[int]
    CURVES_FIELD_NUMBER: _ClassVar[int]
    EXTRAS_FIELD_NUMBER: _ClassVar[int]
    FORWARD_EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    BACKWARD_EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    metric: str
    values: _containers.RepeatedScalarFieldContainer[float]
    higher_is_better: bool
    curves: _containers.RepeatedCompositeFieldContainer[Curve]
    extras: _containers.ScalarMap[str, float]
    forward_evaluations: int
    backward_evaluations: int
    elapsed_seconds: float
    def __init__(self, metric: _Optional[str] = ..., values: _Optional[_Iterable[float]] = ..., higher_is_better: _Optional[bool] = ..., curves: _Optional[_Iterable[_Union[Curve, _Mapping]]] = ..., extras: _Optional[_Mapping[str, float]] = ..., forward_evaluations: _Optional[int] = ..., backward_evaluations: _Optional[int] = ..., elapsed_seconds: _Optional[float] = ...) -> None: ...

class EvaluateDone(_message.Message):
    __slots__ = ("forward_evaluations", "backward_evaluations", "elapsed_seconds", "warnings")
    FORWARD_EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    BACKWARD_EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    forward_evaluations: int
    backward_evaluations: int
    elapsed_seconds: float
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, forward_evaluations: _Optional[int] = ..., backward_evaluations: _Optional[int] = ..., elapsed_seconds: _Optional[float] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("request_id", "accepted", "progress", "explanation", "metric", "done")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    accepted: EvaluateAccepted
    progress: Progress
    explanation: Result
    metric: MetricResult
    done: EvaluateDone
    def __init__(self, request_id: _Optional[str] = ..., accepted: _Optional[_Union[EvaluateAccepted, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., explanation: _Optional[_Union[Result, _Mapping]] = ..., metric: _Optional[_Union[MetricResult, _Mapping]] = ..., done: _Optional[_Union[EvaluateDone, _Mapping]] = ...) -> None: ...

class ListMetricsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MetricInfo(_message.Message):
    __slots__ = ("name", "summary", "higher_is_better", "citation", "parameters", "reexplains")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    HIGHER_IS_BETTER_FIELD_NUMBER: _ClassVar[int]
    CITATION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    REEXPLAINS_FIELD_NUMBER: _ClassVar[int]
    name: str
    summary: str
    higher_is_better: bool
    citation: str
    parameters: _containers.RepeatedCompositeFieldContainer[ParameterInfo]
    reexplains: bool
    def __init__(self, name: _Optional[str] = ..., summary: _Optional[str] = ..., higher_is_better: _Optional[bool] = ..., citation: _Optional[str] = ..., parameters: _Optional[_Iterable[_Union[ParameterInfo, _Mapping]]] = ..., reexplains: _Optional[bool] = ...) -> None: ...

class UnavailableMetric(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ListMetricsResponse(_message.Message):
    __slots__ = ("metrics", "not_per_request")
    METRICS_FIELD_NUMBER: _ClassVar[int]
    NOT_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    metrics: _containers.RepeatedCompositeFieldContainer[MetricInfo]
    not_per_request: _containers.RepeatedCompositeFieldContainer[UnavailableMetric]
    def __init__(self, metrics: _Optional[_Iterable[_Union[MetricInfo, _Mapping]]] = ..., not_per_request: _Optional[_Iterable[_Union[UnavailableMetric, _Mapping]]] = ...) -> None: ...
