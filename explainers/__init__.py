"""onnxplain's explanation library: attribution methods for any ONNX image classifier.

Knows nothing about gRPC. Entry points: :class:`OnnxClassifier` (load a model),
:class:`Objective` (what to explain), :func:`explain` (run a registered method),
:func:`evaluate` (score a method's explanation with registered metrics, :mod:`.metrics`).
"""

from .context import RunContext
from .evaluate import evaluate, evaluate_once
from .events import Event, Explanation, Planned, Progress
from .explain import explain, explain_once, top_classes
from .methods import Family, get_method, list_methods
from .metrics import MetricResult, get_metric, list_metrics
from .model import Evaluator, ModelConfig, OnnxClassifier, Preprocessing
from .objectives import Objective

__all__ = [
    "Evaluator",
    "Event",
    "Explanation",
    "Family",
    "MetricResult",
    "ModelConfig",
    "Objective",
    "OnnxClassifier",
    "Planned",
    "Preprocessing",
    "Progress",
    "RunContext",
    "evaluate",
    "evaluate_once",
    "explain",
    "explain_once",
    "get_method",
    "get_metric",
    "list_methods",
    "list_metrics",
    "top_classes",
]
