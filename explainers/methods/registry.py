"""The method registry: ``@register("name", ...)`` on a method's ``explain`` generator.

A method is a generator function::

    explain(model: Evaluator, image: NDArray[float32] [C, H, W], objective: Objective,
            params: <its MethodParams>, *, rng: numpy.random.Generator) -> Iterator[Event]

yielding one :class:`~explainers.events.Planned`, any :class:`~explainers.events.Progress`, and
one :class:`~explainers.events.Explanation` last. Names are part of the public contract
(``ListMethods``, the proto's parameter messages, the CLI); registering a name twice is an error.

A gradient method registered with an ``attribution`` factory (see :mod:`.attribution`) can also be
wrapped by SmoothGrad, by name: :func:`gradient_attributions` lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from ..errors import NotFound
from ..events import Event
from ..params import MethodParams

if TYPE_CHECKING:
    from .attribution import AttributionFactory


class Family(str, Enum):
    PERTURBATION = "perturbation"
    GRADIENT = "gradient"
    CONTRASTIVE = "contrastive"


ExplainFn = Callable[..., Iterator[Event]]


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its contract name, family, parameter type, generator, the paper it
    implements (``citation``), for a gradient attribution SmoothGrad can wrap, its factory, and
    ``tensor_planes(channels)``: how many H × W float32 planes per target its ``Explanation.tensors``
    hold at most (so a server can refuse a result too large to send before any work)."""

    name: str
    family: Family
    black_box: bool
    params: type[MethodParams]
    explain: ExplainFn
    citation: str
    attribution: AttributionFactory | None = None
    tensor_planes: Callable[[int], int] = lambda channels: 0

    @property
    def summary(self) -> str:
        doc = (self.explain.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


_REGISTRY: dict[str, MethodSpec] = {}


def register(
    name: str, *, family: Family, black_box: bool, params: type[MethodParams], citation: str,
    attribution: AttributionFactory | None = None,
    tensor_planes: Callable[[int], int] = lambda channels: 0,
) -> Callable[[ExplainFn], ExplainFn]:
    """Register ``explain`` under ``name``; raises ``ValueError`` on a duplicate name.

    ``citation``: the paper it implements. ``attribution``: for a gradient method, its
    :class:`~.attribution.GradientAttribution` for given parameters — what SmoothGrad wraps.
    ``tensor_planes``: see :class:`MethodSpec`.
    """

    def decorate(explain: ExplainFn) -> ExplainFn:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is already registered by {_REGISTRY[name].explain.__module__}")
        _REGISTRY[name] = MethodSpec(name, family, black_box, params, explain, citation, attribution, tensor_planes)
        return explain

    return decorate


def get_method(name: str) -> MethodSpec:
    """The method called ``name``; :class:`NotFound` lists the registered names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise NotFound("method", name, _REGISTRY) from None


def list_methods() -> list[MethodSpec]:
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def gradient_attributions() -> tuple[str, ...]:
    """Names of the registered methods with a gradient attribution (those SmoothGrad can wrap), sorted."""
    return tuple(spec.name for spec in list_methods() if spec.attribution is not None)
