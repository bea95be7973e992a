"""The wire codec beside the contract: numpy ↔ ``onnxplain.v1.Tensor`` and enum value names.

Tensors travel as OIP datatype strings, a shape and row-major little-endian bytes. Enum values are
named on the wire-free side (CLI, library) by their short lower-case name: ``BASELINE_BLUR`` of enum
``Baseline`` is ``"blur"``. Client and server both use this module (numpy + protobuf only), so
neither imports the other.
"""

from __future__ import annotations

import math

import numpy as np
from google.protobuf.descriptor import EnumDescriptor
from numpy.typing import NDArray

from onnxplain.v1 import tensor_pb2

DATATYPES: dict[str, np.dtype] = {
    "FP32": np.dtype("<f4"),
    "FP16": np.dtype("<f2"),
    "FP64": np.dtype("<f8"),
    "UINT8": np.dtype("u1"),
    "INT8": np.dtype("i1"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "BOOL": np.dtype("?"),
}
MAX_RANK = 8
"""Most dimensions a Tensor may have."""
_BY_DTYPE = {dtype.newbyteorder("<") if dtype.itemsize > 1 else dtype: name for name, dtype in DATATYPES.items()}


class TensorError(ValueError):
    """A Tensor message that cannot be decoded; ``field`` says which part is wrong."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.description = message


def to_tensor(array: NDArray) -> tensor_pb2.Tensor:
    """Encode a numpy array (any supported dtype) as a Tensor message."""
    array = np.asarray(array)
    dtype = array.dtype.newbyteorder("<") if array.dtype.itemsize > 1 else array.dtype
    name = _BY_DTYPE.get(dtype)
    if name is None:
        raise TensorError("datatype", f"numpy dtype {array.dtype} has no OIP datatype; allowed: {', '.join(DATATYPES)}")
    data = np.ascontiguousarray(array, dtype=dtype)
    return tensor_pb2.Tensor(datatype=name, shape=list(array.shape), raw_contents=data.tobytes())


def from_tensor(tensor: tensor_pb2.Tensor, *, field: str = "tensor") -> NDArray:
    """Decode a Tensor message; raises :class:`TensorError` naming the bad part."""
    dtype = DATATYPES.get(tensor.datatype)
    if dtype is None:
        raise TensorError(
            f"{field}.datatype", f"unknown datatype {tensor.datatype!r}; allowed: {', '.join(DATATYPES)}"
        )
    shape = tuple(int(d) for d in tensor.shape)
    if len(shape) > MAX_RANK:
        raise TensorError(f"{field}.shape", f"{len(shape)} dimensions; allowed: at most {MAX_RANK}")
    if any(d < 0 for d in shape):
        raise TensorError(f"{field}.shape", f"negative dimension in {list(shape)}")
    expected = math.prod(shape) * dtype.itemsize  # Python ints: a shape like [2**62, 4] cannot overflow
    if len(tensor.raw_contents) != expected:
        raise TensorError(
            f"{field}.raw_contents",
            f"{len(tensor.raw_contents)} bytes for {tensor.datatype} {list(shape)}; expected {expected}",
        )
    return np.frombuffer(tensor.raw_contents, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def enum_prefix(enum: EnumDescriptor) -> str:
    """The prefix every value of ``enum`` carries by buf's rule: ``HeatmapDatatype`` → ``HEATMAP_DATATYPE_``."""
    return "".join("_" + c if c.isupper() else c.upper() for c in enum.name).lstrip("_") + "_"


def enum_short_names(enum: EnumDescriptor) -> dict[str, int]:
    """Short lower-case value names → numbers, without the ``_UNSPECIFIED`` zero value."""
    prefix = enum_prefix(enum)
    return {v.name.removeprefix(prefix).lower(): v.number for v in enum.values if v.number != 0}


def enum_short_name(enum: EnumDescriptor, number: int) -> str | None:
    """The short lower-case name of value ``number``; None for the zero value or a number ``enum`` lacks."""
    value = enum.values_by_number.get(number)
    if value is None or number == 0:
        return None
    return value.name.removeprefix(enum_prefix(enum)).lower()
