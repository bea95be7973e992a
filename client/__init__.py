"""The thin onnxplain client (grpcio + protobuf + numpy): :class:`Client` and the ``onnxplain`` CLI."""

from .client import Accepted, Client, Prediction, Progress, Result, TargetResult

__all__ = ["Accepted", "Client", "Prediction", "Progress", "Result", "TargetResult"]
