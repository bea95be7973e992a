"""The thin onnxplain client (grpcio + protobuf + numpy): :class:`Client`, :class:`AsyncClient` and the
``onnxplain`` CLI."""

from .aio import AsyncClient
from .client import Accepted, Client, Prediction, Progress, Result, TargetResult

__all__ = ["Accepted", "AsyncClient", "Client", "Prediction", "Progress", "Result", "TargetResult"]
