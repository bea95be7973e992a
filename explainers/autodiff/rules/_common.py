"""Helpers shared by rules of several op families."""

from __future__ import annotations

from typing import Any

import onnx
from onnx import helper


def text(value: Any) -> str:
    """A string attribute as ``str`` (onnx returns ``bytes``); ``None`` becomes ``""``."""
    return value.decode() if isinstance(value, bytes) else (value or "")


def node_attributes(node: onnx.NodeProto, **overrides: Any) -> dict:
    """The node's attributes as Python values (strings decoded), with ``overrides`` applied."""
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    attributes = {name: text(value) if isinstance(value, bytes) else value for name, value in attributes.items()}
    attributes.update(overrides)
    return attributes
