"""onnxplain's explanation library: attribution methods for any ONNX image classifier.

Knows nothing about gRPC. Entry points: :class:`OnnxClassifier` (load a model),
:class:`Objective` (what to explain), :func:`explain` (run a registered method).
"""

from .context import RunContext
from .events import Event, Explanation, Planned, Progress
from .explain import explain, explain_once, top_classes
from .methods import Family, get_method, list_methods
from .model import CompanionModel, Evaluator, ModelConfig, OnnxClassifier, Preprocessing
from .objectives import Objective

__all__ = [
    "CompanionModel",
    "Evaluator",
    "Event",
    "Explanation",
    "Family",
    "ModelConfig",
    "Objective",
    "OnnxClassifier",
    "Planned",
    "Preprocessing",
    "Progress",
    "RunContext",
    "explain",
    "explain_once",
    "get_method",
    "list_methods",
    "top_classes",
]
