"""The model adapter: the only package that imports onnxruntime."""

from .classifier import IMAGE, PLAIN, Chunk, GradientChunk, ModelInfo, OnnxClassifier, available_providers
from .config import ModelConfig, Preprocessing
from .evaluator import Evaluator, GradientBatch
from .preprocessing import Geometry, black_image, decode_image, preprocess, to_rgb_array

__all__ = [
    "IMAGE",
    "PLAIN",
    "Chunk",
    "GradientChunk",
    "Evaluator",
    "GradientBatch",
    "Geometry",
    "ModelConfig",
    "ModelInfo",
    "OnnxClassifier",
    "Preprocessing",
    "available_providers",
    "decode_image",
    "preprocess",
    "black_image",
    "to_rgb_array",
]
