"""The Open Inference Protocol v2 (KServe/Triton), as onnxplain serves it: generated stubs only.

The proto package is ``inference`` (the protocol's own), so these stubs and another copy of the
protocol's (``tritonclient``'s) cannot share one process's default descriptor pool; onnxplain's
server imports them only when it serves.
"""
