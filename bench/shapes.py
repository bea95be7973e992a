"""Full-size architectures with random weights, built with onnx.helper (no download, no torch).

The benchmark needs realistic sizes where the fixtures (tests/fixtures/, 32×32 and a few channels)
are too small: VGG11's 530 MB of weights (graph-build time) and ResNet-50's 4 GFLOP forward
(backward ÷ forward). Weights are He-initialised so that activations stay in range; batch norm is
folded into the convolutions' biases as exporters' optimised graphs have it. Shapes follow
torchvision's models (224×224 input, 1000 classes, the legacy exporter's ops).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _Graph:
    """Nodes and initializers appended in order, with fresh names."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def weight(self, shape: tuple[int, ...], fan_in: int) -> str:
        name = f"w{len(self.initializers)}"
        value = self.rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, *inputs: str, **attributes) -> str:
        out = f"{op_type.lower()}{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attributes))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, relu: bool = True) -> str:
        w = self.weight((cout, cin, k, k), cin * k * k)
        b = self.weight((cout,), 50 * cout)  # small biases
        y = self.op("Conv", x, w, b, kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)
        return self.op("Relu", y) if relu else y

    def linear(self, x: str, cin: int, cout: int, name: str | None = None) -> str:
        w, b = self.weight((cout, cin), cin), self.weight((cout,), 50 * cout)
        out = name or f"gemm{len(self.nodes)}"
        self.nodes.append(helper.make_node("Gemm", [x, w, b], [out], transB=1))
        return out

    def model(self, name: str) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, name, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 224, 224])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1000])], self.initializers)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def vgg11(seed: int = 0) -> onnx.ModelProto:
    """VGG11 (Simonyan & Zisserman 2015, config A): 8 convs, 5 max pools, 3 linear layers; 133 M weights."""
    g, x, channels = _Graph(seed), "input", 3
    for width in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"):
        if width == "M":
            x = g.op("MaxPool", x, kernel_shape=[2, 2], strides=[2, 2])
        else:
            x, channels = g.conv(x, channels, width, 3), width
    x = g.op("Flatten", x, axis=1)  # the adaptive 7×7 average pool is the identity at 224×224
    x = g.op("Relu", g.linear(x, 512 * 49, 4096))
    x = g.op("Relu", g.linear(x, 4096, 4096))
    g.linear(x, 4096, 1000, name="logits")
    return g.model("vgg11")


def resnet50(seed: int = 0) -> onnx.ModelProto:
    """ResNet-50 (He et al. 2016): bottleneck blocks [3, 4, 6, 3], stride on the 3×3 conv (v1.5, as
    torchvision); 25.5 M weights, ~4.1 GFLOP per 224×224 image."""
    g = _Graph(seed)
    x = g.op("MaxPool", g.conv("input", 3, 64, 7, 2), kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    channels = 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
        for block in range(blocks):
            stride = 2 if block == 0 and stage > 0 else 1
            y = g.conv(x, channels, width, 1)
            y = g.conv(y, width, width, 3, stride)
            y = g.conv(y, width, 4 * width, 1, relu=False)
            shortcut = g.conv(x, channels, 4 * width, 1, stride, relu=False) if block == 0 else x
            x, channels = g.op("Relu", g.op("Add", y, shortcut)), 4 * width
    x = g.op("Flatten", g.op("GlobalAveragePool", x), axis=1)
    g.linear(x, 2048, 1000, name="logits")
    return g.model("resnet50")
