"""Method parameters: frozen, keyword-only dataclasses with declared bounds.

A method declares its parameters once::

    @dataclass(frozen=True, kw_only=True)
    class OcclusionParams(MethodParams):
        window: int = param(16, low=1, high=1024, doc="side of the occluding square, pixels")

Construction validates every field (type, range, choices) and then the cross-field
:meth:`MethodParams.check` hook; a bad value raises :class:`~explainers.errors.InvalidArgument`
naming the parameter and what is allowed. :meth:`MethodParams.describe` feeds ``ListMethods``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .errors import InvalidArgument, check_range

_TYPES = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "tuple[float, ...]": tuple,
    "NDArray[np.float32] | None": np.ndarray,  # an optional tensor (e.g. a user baseline); shape checked by the method
}


def param(
    default: Any,
    *,
    doc: str,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """Declare one parameter: its paper default, bounds (inclusive) or allowed choices, and a doc."""
    meta = {"doc": doc, "low": low, "high": high, "choices": choices}
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class ParameterSpec:
    """What ``ListMethods`` reports about one parameter."""

    name: str
    type: str
    default: Any
    doc: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class MethodParams:
    """Base of every parameter dataclass. ``field_prefix`` names fields in error messages."""

    field_prefix: ClassVar[str] = "params"

    def __post_init__(self) -> None:
        for spec in self.describe():
            value = getattr(self, spec.name)
            object.__setattr__(self, spec.name, self._coerce(spec, value))
        self.check()

    def check(self) -> None:
        """Cross-field constraints; override and raise :class:`InvalidArgument` via :meth:`fail`."""

    def fail(self, name: str, message: str) -> None:
        raise InvalidArgument(f"{self.field_prefix}.{name}", message)

    def _coerce(self, spec: ParameterSpec, value: Any) -> Any:
        field = f"{self.field_prefix}.{spec.name}"
        kind = _TYPES[spec.type]
        if kind is np.ndarray:
            if value is None:
                return None
            array = np.asarray(value, dtype=np.float32)
            if not np.all(np.isfinite(array)):
                raise InvalidArgument(field, "contains NaN or infinite values")
            array.setflags(write=False)
            return array
        if kind is tuple:  # a non-empty list of floats, each within the bounds
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise InvalidArgument(field, f"expected a list of numbers, got {value!r}")
            items = tuple(value)
            if not items:
                raise InvalidArgument(field, "expected at least one value")
            for index, item in enumerate(items):
                if isinstance(item, bool) or not isinstance(item, (int, float)):
                    raise InvalidArgument(f"{field}[{index}]", f"expected a number, got {item!r}")
                check_range(f"{field}[{index}]", float(item), spec.low, spec.high)
            return tuple(float(item) for item in items)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise InvalidArgument(field, f"expected {spec.type}, got {type(value).__name__} {value!r}")
        if spec.choices is not None and value not in spec.choices:
            raise InvalidArgument(field, f"{value!r} is not allowed; choices: {', '.join(spec.choices)}")
        if kind in (int, float):
            check_range(field, value, spec.low, spec.high)
        return value

    @classmethod
    def describe(cls) -> list[ParameterSpec]:
        specs = []
        for f in dataclasses.fields(cls):
            type_name = f.type if isinstance(f.type, str) else f.type.__name__
            specs.append(
                ParameterSpec(
                    name=f.name,
                    type=type_name,
                    default=f.default,
                    doc=f.metadata.get("doc", ""),
                    low=f.metadata.get("low"),
                    high=f.metadata.get("high"),
                    choices=f.metadata.get("choices"),
                )
            )
        return specs

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> MethodParams:
        """Build from a mapping (e.g. decoded from a request); unknown names are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        for name in values:
            if name not in known:
                allowed = ", ".join(sorted(known)) or "none"
                raise InvalidArgument(
                    f"{cls.field_prefix}.{name}", f"unknown parameter; allowed: {allowed}"
                )
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
