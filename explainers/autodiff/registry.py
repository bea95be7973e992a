"""Vector-Jacobian rules, one per ONNX op type, and the rule sets built from them.

A rule has the signature::

    rule(ctx: VjpContext, node: NodeProto, grads: list[str | None]) -> list[str | None]

``grads[i]`` names the gradient of the node's output ``i`` (``None`` when nothing downstream
depends on it); the rule emits nodes through ``ctx`` and returns one gradient name per node
input (``None`` for an input that gets no gradient: indices, shapes, weights). Vocabulary after
onnxruntime's gradient builders: I(i) = ``node.input[i]``, O(i) = ``node.output[i]``,
GO(i) = ``grads[i]``, GI(i) = the returned list.

A *rule set* is a mapping op type → rule: the defaults with a few overrides (guided backprop and
DeconvNet override only the ReLU-like rules); :mod:`.rule_sets` assembles them.

A rule that cannot differentiate its node raises :class:`~.errors.Declined` with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING

import onnx

if TYPE_CHECKING:
    from .context import VjpContext

Rule = Callable[["VjpContext", onnx.NodeProto, Sequence[str | None]], Sequence[str | None]]

_DEFAULT: dict[str, Rule] = {}
_OVERRIDES: dict[str, dict[str, Rule]] = {}


def vjp(*op_types: str, rule_set: str | None = None) -> Callable[[Rule], Rule]:
    """Register ``rule`` for ``op_types`` in the default rules, or as an override in ``rule_set``.

    Registering an op twice in the same set is an error.
    """

    def register(rule: Rule) -> Rule:
        table = _DEFAULT if rule_set is None else _OVERRIDES.setdefault(rule_set, {})
        for op_type in op_types:
            if op_type in table:
                raise ValueError(f"a {op_type} rule is already registered{f' in {rule_set}' if rule_set else ''}")
            table[op_type] = rule
        return rule

    return register


def default_rule(op_type: str) -> Rule:
    """The vanilla rule of ``op_type`` (for override rules that keep it where theirs does not apply)."""
    return _DEFAULT[op_type]


def registered() -> tuple[Mapping[str, Rule], Mapping[str, Mapping[str, Rule]]]:
    """The default rules and the override sets registered so far (read-only views).

    This module never imports the rules (they import it to register): :mod:`.rule_sets` does,
    and answers with complete tables."""
    return MappingProxyType(_DEFAULT), MappingProxyType(_OVERRIDES)
