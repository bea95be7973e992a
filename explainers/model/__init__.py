"""The model adapter: the only package that imports onnxruntime.

One job a module: :mod:`.classifier` loads and validates a model and says what it is;
:mod:`.batch_repair` makes a fixed-batch export evaluate batches; :mod:`.introspect` answers graph
questions by running the model; :mod:`.variants` builds the graph variants; :mod:`.session` keeps
their compiled sessions in one bounded pool; :mod:`.loop` is the one batched evaluation loop;
:mod:`.evaluator` is the methods' handle, bound to one request; :mod:`.preprocessing` turns images
and client tensors into model input; :mod:`.remote` is a classifier whose model is served elsewhere; :mod:`.companions` are the
non-classifier models (generators, autoencoders) methods use by name.
"""

from .classifier import ModelInfo, OnnxClassifier, available_providers
from .companions import CompanionHandle, CompanionModel, is_companion_config
from .config import ModelConfig, Preprocessing
from .evaluator import Evaluator, GradientBatch, layer_gradient
from .introspect import Introspection
from .loop import IMAGE, Chunk
from .preprocessing import Geometry, ModelInput, black_image, canonical_tensor, decode_image, preprocess, to_rgb_array
from .remote import Endpoint, RemoteClassifier, RemoteSignature
from .session import PoolStats, SessionPool
from .variants import PLAIN_VARIANT, Variant

__all__ = [
    "IMAGE",
    "PLAIN_VARIANT",
    "Chunk",
    "CompanionHandle",
    "CompanionModel",
    "Endpoint",
    "Evaluator",
    "GradientBatch",
    "Geometry",
    "Introspection",
    "ModelConfig",
    "ModelInfo",
    "ModelInput",
    "OnnxClassifier",
    "PoolStats",
    "Preprocessing",
    "RemoteClassifier",
    "RemoteSignature",
    "SessionPool",
    "Variant",
    "available_providers",
    "canonical_tensor",
    "is_companion_config",
    "decode_image",
    "layer_gradient",
    "preprocess",
    "black_image",
    "to_rgb_array",
]
