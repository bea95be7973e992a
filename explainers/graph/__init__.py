"""ONNX graph surgery that is not differentiation: pure ModelProto → ModelProto functions."""
