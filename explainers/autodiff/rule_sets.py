"""The rule sets, complete: importing this module registers every rule (``rules`` imports ``registry``,
never the other way round, so the autodiff modules import each other without a cycle)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from . import rules  # noqa: F401  (importing registers every rule)
from .registry import Rule, registered


def rule_set(name: str = "vanilla") -> Mapping[str, Rule]:
    """The rules of ``name``: "vanilla", or a registered override set such as "guided_backprop"."""
    defaults, overrides = registered()
    if name == "vanilla":
        return defaults
    if name not in overrides:
        raise ValueError(f"unknown rule set {name!r}; available: vanilla, {', '.join(sorted(overrides))}")
    return MappingProxyType({**defaults, **overrides[name]})


def rule_set_names() -> list[str]:
    return ["vanilla", *sorted(registered()[1])]


def supported_ops() -> list[str]:
    return sorted(registered()[0])
