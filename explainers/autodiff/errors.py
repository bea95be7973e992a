"""What building a gradient graph can fail with; a leaf module every other autodiff module may import.

A rule that cannot differentiate its node *declines* (``raise Declined(reason)``); the builder
turns that into a :class:`GradientError` naming the op and the node, so rules state only why.
"""

from __future__ import annotations

import onnx

from ..errors import FailedPrecondition


class GradientError(FailedPrecondition):
    """The model cannot be differentiated (e.g. an op without a rule); raised when building."""

    reason = "GRADIENT_UNAVAILABLE"


class Declined(Exception):
    """Raised by a rule that cannot differentiate its node in this configuration.

    ``reason`` says why and what would be accepted (e.g. "ceil_mode needs a static spatial input
    size"); :func:`declined_error` prefixes the op and the node.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def node_label(node: onnx.NodeProto) -> str:
    """``"<op> node '<name>'"`` (the first output names an unnamed node)."""
    return f"{node.op_type} node {node.name or node.output[0]!r}"


def declined_error(node: onnx.NodeProto, declined: Declined) -> GradientError:
    """The GradientError reported when the rule of ``node`` declines."""
    return GradientError(f"{node_label(node)}: {declined.reason}")
