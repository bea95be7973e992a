from onnxplain.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Baseline(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BASELINE_UNSPECIFIED: _ClassVar[Baseline]
    BASELINE_ZERO: _ClassVar[Baseline]
    BASELINE_MEAN: _ClassVar[Baseline]
    BASELINE_BLUR: _ClassVar[Baseline]
    BASELINE_SEGMENT_MEAN: _ClassVar[Baseline]

class RiseSampling(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RISE_SAMPLING_UNSPECIFIED: _ClassVar[RiseSampling]
    RISE_SAMPLING_RANDOM: _ClassVar[RiseSampling]
    RISE_SAMPLING_QUASI_RANDOM: _ClassVar[RiseSampling]

class LimeSampling(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LIME_SAMPLING_UNSPECIFIED: _ClassVar[LimeSampling]
    LIME_SAMPLING_RANDOM: _ClassVar[LimeSampling]
    LIME_SAMPLING_QUASI_RANDOM: _ClassVar[LimeSampling]

class ExtremalMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXTREMAL_MODE_UNSPECIFIED: _ClassVar[ExtremalMode]
    EXTREMAL_MODE_PRESERVATION: _ClassVar[ExtremalMode]
    EXTREMAL_MODE_DELETION: _ClassVar[ExtremalMode]

class ExtremalGradient(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXTREMAL_GRADIENT_UNSPECIFIED: _ClassVar[ExtremalGradient]
    EXTREMAL_GRADIENT_AUTO: _ClassVar[ExtremalGradient]
    EXTREMAL_GRADIENT_EXACT: _ClassVar[ExtremalGradient]
    EXTREMAL_GRADIENT_FINITE_DIFFERENCES: _ClassVar[ExtremalGradient]

class MeaningfulScore(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEANINGFUL_SCORE_UNSPECIFIED: _ClassVar[MeaningfulScore]
    MEANINGFUL_SCORE_PROBABILITY: _ClassVar[MeaningfulScore]
    MEANINGFUL_SCORE_OBJECTIVE: _ClassVar[MeaningfulScore]

class PathBaseline(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PATH_BASELINE_UNSPECIFIED: _ClassVar[PathBaseline]
    PATH_BASELINE_ZERO: _ClassVar[PathBaseline]
    PATH_BASELINE_BLUR: _ClassVar[PathBaseline]
    PATH_BASELINE_UNIFORM_NOISE: _ClassVar[PathBaseline]
    PATH_BASELINE_TENSOR: _ClassVar[PathBaseline]
    PATH_BASELINE_BLACK: _ClassVar[PathBaseline]

class IntegrationRule(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INTEGRATION_RULE_UNSPECIFIED: _ClassVar[IntegrationRule]
    INTEGRATION_RULE_GAUSS_LEGENDRE: _ClassVar[IntegrationRule]
    INTEGRATION_RULE_TRAPEZOID: _ClassVar[IntegrationRule]
    INTEGRATION_RULE_RIEMANN_LEFT: _ClassVar[IntegrationRule]
    INTEGRATION_RULE_RIEMANN_RIGHT: _ClassVar[IntegrationRule]
    INTEGRATION_RULE_RIEMANN_MIDDLE: _ClassVar[IntegrationRule]

class SmoothGradVariant(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SMOOTH_GRAD_VARIANT_UNSPECIFIED: _ClassVar[SmoothGradVariant]
    SMOOTH_GRAD_VARIANT_MEAN: _ClassVar[SmoothGradVariant]
    SMOOTH_GRAD_VARIANT_SQUARED: _ClassVar[SmoothGradVariant]
    SMOOTH_GRAD_VARIANT_VARGRAD: _ClassVar[SmoothGradVariant]

class CemMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CEM_MODE_UNSPECIFIED: _ClassVar[CemMode]
    CEM_MODE_BOTH: _ClassVar[CemMode]
    CEM_MODE_PN: _ClassVar[CemMode]
    CEM_MODE_PP: _ClassVar[CemMode]

class CemPnDirection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CEM_PN_DIRECTION_UNSPECIFIED: _ClassVar[CemPnDirection]
    CEM_PN_DIRECTION_ADD: _ClassVar[CemPnDirection]
    CEM_PN_DIRECTION_ANY: _ClassVar[CemPnDirection]

class CemGradient(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CEM_GRADIENT_UNSPECIFIED: _ClassVar[CemGradient]
    CEM_GRADIENT_AUTO: _ClassVar[CemGradient]
    CEM_GRADIENT_EXACT: _ClassVar[CemGradient]
    CEM_GRADIENT_FINITE_DIFFERENCES: _ClassVar[CemGradient]
BASELINE_UNSPECIFIED: Baseline
BASELINE_ZERO: Baseline
BASELINE_MEAN: Baseline
BASELINE_BLUR: Baseline
BASELINE_SEGMENT_MEAN: Baseline
RISE_SAMPLING_UNSPECIFIED: RiseSampling
RISE_SAMPLING_RANDOM: RiseSampling
RISE_SAMPLING_QUASI_RANDOM: RiseSampling
LIME_SAMPLING_UNSPECIFIED: LimeSampling
LIME_SAMPLING_RANDOM: LimeSampling
LIME_SAMPLING_QUASI_RANDOM: LimeSampling
EXTREMAL_MODE_UNSPECIFIED: ExtremalMode
EXTREMAL_MODE_PRESERVATION: ExtremalMode
EXTREMAL_MODE_DELETION: ExtremalMode
EXTREMAL_GRADIENT_UNSPECIFIED: ExtremalGradient
EXTREMAL_GRADIENT_AUTO: ExtremalGradient
EXTREMAL_GRADIENT_EXACT: ExtremalGradient
EXTREMAL_GRADIENT_FINITE_DIFFERENCES: ExtremalGradient
MEANINGFUL_SCORE_UNSPECIFIED: MeaningfulScore
MEANINGFUL_SCORE_PROBABILITY: MeaningfulScore
MEANINGFUL_SCORE_OBJECTIVE: MeaningfulScore
PATH_BASELINE_UNSPECIFIED: PathBaseline
PATH_BASELINE_ZERO: PathBaseline
PATH_BASELINE_BLUR: PathBaseline
PATH_BASELINE_UNIFORM_NOISE: PathBaseline
PATH_BASELINE_TENSOR: PathBaseline
PATH_BASELINE_BLACK: PathBaseline
INTEGRATION_RULE_UNSPECIFIED: IntegrationRule
INTEGRATION_RULE_GAUSS_LEGENDRE: IntegrationRule
INTEGRATION_RULE_TRAPEZOID: IntegrationRule
INTEGRATION_RULE_RIEMANN_LEFT: IntegrationRule
INTEGRATION_RULE_RIEMANN_RIGHT: IntegrationRule
INTEGRATION_RULE_RIEMANN_MIDDLE: IntegrationRule
SMOOTH_GRAD_VARIANT_UNSPECIFIED: SmoothGradVariant
SMOOTH_GRAD_VARIANT_MEAN: SmoothGradVariant
SMOOTH_GRAD_VARIANT_SQUARED: SmoothGradVariant
SMOOTH_GRAD_VARIANT_VARGRAD: SmoothGradVariant
CEM_MODE_UNSPECIFIED: CemMode
CEM_MODE_BOTH: CemMode
CEM_MODE_PN: CemMode
CEM_MODE_PP: CemMode
CEM_PN_DIRECTION_UNSPECIFIED: CemPnDirection
CEM_PN_DIRECTION_ADD: CemPnDirection
CEM_PN_DIRECTION_ANY: CemPnDirection
CEM_GRADIENT_UNSPECIFIED: CemGradient
CEM_GRADIENT_AUTO: CemGradient
CEM_GRADIENT_EXACT: CemGradient
CEM_GRADIENT_FINITE_DIFFERENCES: CemGradient

class OcclusionParams(_message.Message):
    __slots__ = ("window", "stride", "baseline")
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    window: int
    stride: int
    baseline: Baseline
    def __init__(self, window: _Optional[int] = ..., stride: _Optional[int] = ..., baseline: _Optional[_Union[Baseline, str]] = ...) -> None: ...

class RiseParams(_message.Message):
    __slots__ = ("masks", "grid", "keep_probability", "sampling", "convergence_tolerance", "baseline")
    MASKS_FIELD_NUMBER: _ClassVar[int]
    GRID_FIELD_NUMBER: _ClassVar[int]
    KEEP_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    CONVERGENCE_TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    masks: int
    grid: int
    keep_probability: float
    sampling: RiseSampling
    convergence_tolerance: float
    baseline: Baseline
    def __init__(self, masks: _Optional[int] = ..., grid: _Optional[int] = ..., keep_probability: _Optional[float] = ..., sampling: _Optional[_Union[RiseSampling, str]] = ..., convergence_tolerance: _Optional[float] = ..., baseline: _Optional[_Union[Baseline, str]] = ...) -> None: ...

class LimeParams(_message.Message):
    __slots__ = ("segments", "compactness", "samples", "kernel_width", "ridge_alpha", "baseline", "sampling", "convergence_tolerance")
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    COMPACTNESS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    KERNEL_WIDTH_FIELD_NUMBER: _ClassVar[int]
    RIDGE_ALPHA_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    CONVERGENCE_TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    segments: int
    compactness: float
    samples: int
    kernel_width: float
    ridge_alpha: float
    baseline: Baseline
    sampling: LimeSampling
    convergence_tolerance: float
    def __init__(self, segments: _Optional[int] = ..., compactness: _Optional[float] = ..., samples: _Optional[int] = ..., kernel_width: _Optional[float] = ..., ridge_alpha: _Optional[float] = ..., baseline: _Optional[_Union[Baseline, str]] = ..., sampling: _Optional[_Union[LimeSampling, str]] = ..., convergence_tolerance: _Optional[float] = ...) -> None: ...

class LayerParams(_message.Message):
    __slots__ = ("layer",)
    LAYER_FIELD_NUMBER: _ClassVar[int]
    layer: str
    def __init__(self, layer: _Optional[str] = ...) -> None: ...

class ScoreCamParams(_message.Message):
    __slots__ = ("layer", "skip_constant", "constant_tolerance", "top_channels")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    SKIP_CONSTANT_FIELD_NUMBER: _ClassVar[int]
    CONSTANT_TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    TOP_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    layer: str
    skip_constant: bool
    constant_tolerance: float
    top_channels: int
    def __init__(self, layer: _Optional[str] = ..., skip_constant: _Optional[bool] = ..., constant_tolerance: _Optional[float] = ..., top_channels: _Optional[int] = ...) -> None: ...

class ExtremalPerturbationParams(_message.Message):
    __slots__ = ("areas", "mode", "iterations", "learning_rate", "mask_step", "blur_sigma", "regularization_weight", "gradient", "directions")
    AREAS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    MASK_STEP_FIELD_NUMBER: _ClassVar[int]
    BLUR_SIGMA_FIELD_NUMBER: _ClassVar[int]
    REGULARIZATION_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_FIELD_NUMBER: _ClassVar[int]
    DIRECTIONS_FIELD_NUMBER: _ClassVar[int]
    areas: _containers.RepeatedScalarFieldContainer[float]
    mode: ExtremalMode
    iterations: int
    learning_rate: float
    mask_step: int
    blur_sigma: float
    regularization_weight: float
    gradient: ExtremalGradient
    directions: int
    def __init__(self, areas: _Optional[_Iterable[float]] = ..., mode: _Optional[_Union[ExtremalMode, str]] = ..., iterations: _Optional[int] = ..., learning_rate: _Optional[float] = ..., mask_step: _Optional[int] = ..., blur_sigma: _Optional[float] = ..., regularization_weight: _Optional[float] = ..., gradient: _Optional[_Union[ExtremalGradient, str]] = ..., directions: _Optional[int] = ...) -> None: ...

class MeaningfulPerturbationParams(_message.Message):
    __slots__ = ("iterations", "learning_rate", "mask_step", "blur_sigma", "l1_weight", "tv_weight", "tv_beta", "jitter", "score", "gradient", "directions")
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    MASK_STEP_FIELD_NUMBER: _ClassVar[int]
    BLUR_SIGMA_FIELD_NUMBER: _ClassVar[int]
    L1_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    TV_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    TV_BETA_FIELD_NUMBER: _ClassVar[int]
    JITTER_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_FIELD_NUMBER: _ClassVar[int]
    DIRECTIONS_FIELD_NUMBER: _ClassVar[int]
    iterations: int
    learning_rate: float
    mask_step: int
    blur_sigma: float
    l1_weight: float
    tv_weight: float
    tv_beta: float
    jitter: int
    score: MeaningfulScore
    gradient: ExtremalGradient
    directions: int
    def __init__(self, iterations: _Optional[int] = ..., learning_rate: _Optional[float] = ..., mask_step: _Optional[int] = ..., blur_sigma: _Optional[float] = ..., l1_weight: _Optional[float] = ..., tv_weight: _Optional[float] = ..., tv_beta: _Optional[float] = ..., jitter: _Optional[int] = ..., score: _Optional[_Union[MeaningfulScore, str]] = ..., gradient: _Optional[_Union[ExtremalGradient, str]] = ..., directions: _Optional[int] = ...) -> None: ...

class IntegratedGradientsParams(_message.Message):
    __slots__ = ("steps", "rule", "baseline", "baseline_tensor", "completeness_tolerance")
    STEPS_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_TENSOR_FIELD_NUMBER: _ClassVar[int]
    COMPLETENESS_TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    steps: int
    rule: IntegrationRule
    baseline: PathBaseline
    baseline_tensor: _tensor_pb2.Tensor
    completeness_tolerance: float
    def __init__(self, steps: _Optional[int] = ..., rule: _Optional[_Union[IntegrationRule, str]] = ..., baseline: _Optional[_Union[PathBaseline, str]] = ..., baseline_tensor: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., completeness_tolerance: _Optional[float] = ...) -> None: ...

class SmoothGradParams(_message.Message):
    __slots__ = ("samples", "noise_level", "variant", "inner", "ig_steps", "ig_rule")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    NOISE_LEVEL_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    INNER_FIELD_NUMBER: _ClassVar[int]
    IG_STEPS_FIELD_NUMBER: _ClassVar[int]
    IG_RULE_FIELD_NUMBER: _ClassVar[int]
    samples: int
    noise_level: float
    variant: SmoothGradVariant
    inner: str
    ig_steps: int
    ig_rule: IntegrationRule
    def __init__(self, samples: _Optional[int] = ..., noise_level: _Optional[float] = ..., variant: _Optional[_Union[SmoothGradVariant, str]] = ..., inner: _Optional[str] = ..., ig_steps: _Optional[int] = ..., ig_rule: _Optional[_Union[IntegrationRule, str]] = ...) -> None: ...

class DeepLiftParams(_message.Message):
    __slots__ = ("baseline", "baseline_tensor")
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_TENSOR_FIELD_NUMBER: _ClassVar[int]
    baseline: PathBaseline
    baseline_tensor: _tensor_pb2.Tensor
    def __init__(self, baseline: _Optional[_Union[PathBaseline, str]] = ..., baseline_tensor: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class CemParams(_message.Message):
    __slots__ = ("mode", "kappa", "beta", "c_init", "search_steps", "iterations", "learning_rate", "pn_direction", "gradient", "segments", "compactness", "fd_step", "autoencoder", "gamma", "c_batch")
    MODE_FIELD_NUMBER: _ClassVar[int]
    KAPPA_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    C_INIT_FIELD_NUMBER: _ClassVar[int]
    SEARCH_STEPS_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    PN_DIRECTION_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    COMPACTNESS_FIELD_NUMBER: _ClassVar[int]
    FD_STEP_FIELD_NUMBER: _ClassVar[int]
    AUTOENCODER_FIELD_NUMBER: _ClassVar[int]
    GAMMA_FIELD_NUMBER: _ClassVar[int]
    C_BATCH_FIELD_NUMBER: _ClassVar[int]
    mode: CemMode
    kappa: float
    beta: float
    c_init: float
    search_steps: int
    iterations: int
    learning_rate: float
    pn_direction: CemPnDirection
    gradient: CemGradient
    segments: int
    compactness: float
    fd_step: float
    autoencoder: str
    gamma: float
    c_batch: int
    def __init__(self, mode: _Optional[_Union[CemMode, str]] = ..., kappa: _Optional[float] = ..., beta: _Optional[float] = ..., c_init: _Optional[float] = ..., search_steps: _Optional[int] = ..., iterations: _Optional[int] = ..., learning_rate: _Optional[float] = ..., pn_direction: _Optional[_Union[CemPnDirection, str]] = ..., gradient: _Optional[_Union[CemGradient, str]] = ..., segments: _Optional[int] = ..., compactness: _Optional[float] = ..., fd_step: _Optional[float] = ..., autoencoder: _Optional[str] = ..., gamma: _Optional[float] = ..., c_batch: _Optional[int] = ...) -> None: ...

class CDeepExParams(_message.Message):
    __slots__ = ("generator", "encoder", "reconstruction_steps", "reconstruction_rate", "outer_steps", "inner_steps", "learning_rate", "penalty", "penalty_growth", "tolerance")
    GENERATOR_FIELD_NUMBER: _ClassVar[int]
    ENCODER_FIELD_NUMBER: _ClassVar[int]
    RECONSTRUCTION_STEPS_FIELD_NUMBER: _ClassVar[int]
    RECONSTRUCTION_RATE_FIELD_NUMBER: _ClassVar[int]
    OUTER_STEPS_FIELD_NUMBER: _ClassVar[int]
    INNER_STEPS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    PENALTY_FIELD_NUMBER: _ClassVar[int]
    PENALTY_GROWTH_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    generator: str
    encoder: str
    reconstruction_steps: int
    reconstruction_rate: float
    outer_steps: int
    inner_steps: int
    learning_rate: float
    penalty: float
    penalty_growth: float
    tolerance: float
    def __init__(self, generator: _Optional[str] = ..., encoder: _Optional[str] = ..., reconstruction_steps: _Optional[int] = ..., reconstruction_rate: _Optional[float] = ..., outer_steps: _Optional[int] = ..., inner_steps: _Optional[int] = ..., learning_rate: _Optional[float] = ..., penalty: _Optional[float] = ..., penalty_growth: _Optional[float] = ..., tolerance: _Optional[float] = ...) -> None: ...
