from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Baseline(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BASELINE_UNSPECIFIED: _ClassVar[Baseline]
    BASELINE_ZERO: _ClassVar[Baseline]
    BASELINE_MEAN: _ClassVar[Baseline]
    BASELINE_BLUR: _ClassVar[Baseline]
BASELINE_UNSPECIFIED: Baseline
BASELINE_ZERO: Baseline
BASELINE_MEAN: Baseline
BASELINE_BLUR: Baseline

class OcclusionParams(_message.Message):
    __slots__ = ("window", "stride", "baseline")
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    window: int
    stride: int
    baseline: Baseline
    def __init__(self, window: _Optional[int] = ..., stride: _Optional[int] = ..., baseline: _Optional[_Union[Baseline, str]] = ...) -> None: ...
