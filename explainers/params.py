"""Method parameters: frozen, keyword-only dataclasses with declared bounds.

A method declares its parameters once::

    @dataclass(frozen=True, kw_only=True)
    class OcclusionParams(MethodParams):
        window: int = param(16, low=1, high=1024, doc="side of the occluding square, pixels")

Construction validates every field (type, finiteness, range, choices) and then the cross-field
:meth:`MethodParams.check` hook; a bad value raises :class:`~explainers.errors.InvalidArgument`
naming the parameter and what is allowed. :meth:`MethodParams.describe` feeds ``ListMethods``.

A parameter's *kind* — what ``ListMethods`` reports and how a value is checked — comes from its
annotation, resolved with :func:`typing.get_type_hints` (never from the annotation's text), or from
an explicit ``param(kind=...)``:

=========  ==============================  ===================================================
kind       annotation                      accepted values
=========  ==============================  ===================================================
int        ``int``                         an int (or an integral float)
float      ``float``                       a finite number (NaN never; ±inf with ``finite=False``)
str        ``str``                         a string, one of ``choices`` when declared
bool       ``bool``                        True or False
floats     ``tuple[float, ...]``           a non-empty list of finite numbers, each in bounds
tensor     ``NDArray[...] | None``         None or a float32 array without NaN or inf
=========  ==============================  ===================================================
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from .errors import InvalidArgument, check_range

Kind = Literal["int", "float", "str", "bool", "floats", "tensor"]
Choices = tuple[str, ...] | Callable[[], tuple[str, ...]]
"""Allowed values, or a function returning them (for choices that are registered later, such as the
methods SmoothGrad wraps), asked each time the parameter is described."""

_SCALARS: dict[type, Kind] = {bool: "bool", int: "int", float: "float", str: "str"}


def param(
    default: Any,
    *,
    doc: str,
    low: float | None = None,
    high: float | None = None,
    choices: Choices | None = None,
    finite: bool = True,
    kind: Kind | None = None,
) -> Any:
    """Declare one parameter: its paper default, bounds (inclusive) or allowed choices, and a doc.

    ``finite=False`` lets a float parameter be ±inf (NaN is never allowed); ``kind`` overrides the
    kind read from the annotation (see the module doc).
    """
    meta = {"doc": doc, "low": low, "high": high, "choices": choices, "finite": finite, "kind": kind}
    return dataclasses.field(default=default, metadata=meta)


def kind_of(annotation: Any) -> Kind:
    """The kind of a resolved annotation (``int``, ``tuple[float, ...]``, ``NDArray[np.float32] | None``, ...).

    Raises:
        TypeError: an annotation without a kind (declare it with ``param(kind=...)``).
    """
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is tuple and args == (float, ...):
        return "floats"
    optional = [a for a in args if a is not type(None)]
    if len(optional) == 1 and len(args) == 2 and typing.get_origin(optional[0]) is np.ndarray:
        return "tensor"
    raise TypeError(f"no parameter kind for the annotation {annotation!r}; declare it with param(kind=...)")


@dataclass(frozen=True)
class ParameterSpec:
    """What ``ListMethods`` reports about one parameter."""

    name: str
    kind: Kind
    default: Any
    doc: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    finite: bool = True


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
        if spec.kind == "tensor":
            if value is None:
                return None
            array = np.asarray(value, dtype=np.float32)
            if not np.all(np.isfinite(array)):
                raise InvalidArgument(field, "contains NaN or infinite values")
            array.setflags(write=False)
            return array
        if spec.kind == "floats":  # a non-empty list of floats, each finite and within the bounds
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise InvalidArgument(field, f"expected a list of numbers, got {value!r}")
            items = tuple(value)
            if not items:
                raise InvalidArgument(field, "expected at least one value")
            for index, item in enumerate(items):
                if isinstance(item, bool) or not isinstance(item, (int, float)):
                    raise InvalidArgument(f"{field}[{index}]", f"expected a number, got {item!r}")
                _check_number(f"{field}[{index}]", float(item), spec)
            return tuple(float(item) for item in items)
        kind = {"int": int, "float": float, "str": str, "bool": bool}[spec.kind]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise InvalidArgument(field, f"expected {spec.kind}, got {type(value).__name__} {value!r}")
        if spec.choices is not None and value not in spec.choices:
            raise InvalidArgument(field, f"{value!r} is not allowed; choices: {', '.join(spec.choices)}")
        if kind in (int, float):
            _check_number(field, value, spec)
        return value

    @classmethod
    def describe(cls) -> list[ParameterSpec]:
        """Every parameter's spec, in declaration order; kinds from the resolved annotations."""
        kinds = _annotated_kinds(cls)
        specs = []
        for f in dataclasses.fields(cls):
            choices = f.metadata.get("choices")
            specs.append(
                ParameterSpec(
                    name=f.name,
                    kind=f.metadata.get("kind") or kinds[f.name],
                    default=f.default,
                    doc=f.metadata.get("doc", ""),
                    low=f.metadata.get("low"),
                    high=f.metadata.get("high"),
                    choices=choices() if callable(choices) else choices,
                    finite=f.metadata.get("finite", True),
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


@dataclass(frozen=True, kw_only=True)
class NoParams(MethodParams):
    """The parameters of a method without any (the proto has no params message for it)."""


@functools.cache
def _annotated_kinds(cls: type[MethodParams]) -> dict[str, Kind]:
    """The kind of each field of ``cls`` declared without ``kind=`` (annotations resolved once per class)."""
    hints = typing.get_type_hints(cls)
    return {f.name: kind_of(hints[f.name]) for f in dataclasses.fields(cls) if not f.metadata.get("kind")}


def _check_number(field: str, value: float, spec: ParameterSpec) -> None:
    """Finiteness, then the bounds. NaN compares false with everything, so it would pass any range
    check: it is refused first, as is ±inf unless the parameter allows it (``finite=False``)."""
    if math.isnan(value) or (spec.finite and math.isinf(value)):
        allowed = "a finite number" if spec.finite else "a number or ±inf, not NaN"
        raise InvalidArgument(field, f"{value!r} is not allowed; must be {allowed}")
    check_range(field, value, spec.low, spec.high)
