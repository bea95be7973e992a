"""onnxplain: explain any ONNX image classifier, over gRPC, while it runs.

One import name with four parts, each installable on its own terms:

- :mod:`onnxplain.v1` — the contract (generated stubs) and its wire codec (:mod:`onnxplain.v1.wire`);
- :mod:`onnxplain.client` — the thin client and CLI (grpcio, protobuf, numpy only);
- :mod:`onnxplain.explainers` — the library: methods, gradient graphs, the model adapter (``[cpu]``/``[gpu]``);
- :mod:`onnxplain.server` — the gRPC service over the library (``[cpu]``/``[gpu]``).

Importing :mod:`onnxplain` itself imports none of them.
"""

__version__ = "0.2.0"

__all__ = ["__version__"]
