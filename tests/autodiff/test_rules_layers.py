"""Rule table: layers — Conv, ConvTranspose, pooling, normalisation, MatMul, Einsum, Gemm.

Rows run through ``gradcheck.check`` (float64 finite differences with onnx.reference, plus
onnxruntime float32). Three onnx.reference bugs would make correct rules fail; the autouse fixture
``reference_fixes`` in conftest.py routes around them with onnx's own code:

* ``ConvTranspose`` with ``group`` > 1 slices the weights by output channels and writes one output
  channel per group, so it is only right for depthwise kernels with one channel per group. Grouped
  Conv rows need it (their data gradient is a grouped ConvTranspose): run it group by group
  through the reference's own ``group=1`` code.
* ``MaxPool`` with all strides and dilations 1 takes a generic path whose ``Indices`` are wrong
  (the in-window argmax decoded with the output shape, without the N·C offset), and whose 1-D
  padding fails. The reference's loop implementation (``MaxPool._max_pool``, used for every other
  stride) is right, and flattens ``Indices`` over the whole N·C·H·W input as onnxruntime does:
  use it for every MaxPool.
* ``GlobalMaxPool`` reduces axes 1..2 of a 3-D input (right for 4-D only): reduce every spatial axis.

Where onnx.reference's *forward* is wrong, the rows cannot use it at all and are checked against
onnxruntime alone (:func:`check_with_onnxruntime`): in float64 when onnxruntime has float64 kernels
for every op (MaxPool), otherwise in float32 for models that are linear in x — their finite
differences are exact up to rounding, so a large step keeps rounding negligible. Those rows are:
MaxPool ``SAME_LOWER`` (the reference computes ⌊H/s⌋ outputs instead of ⌈H/s⌉), ConvTranspose
with ``output_shape`` (unsupported), AveragePool whose ``ceil_mode`` windows overhang by ≥ 2
(the reference shifts every window by half the overhang) and BatchNormalization before opset 14
(the reference runs it in training mode).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from gradcheck import Case, build_model, case_input, check, finite_difference
from onnx.reference import ReferenceEvaluator

from onnxplain.explainers.autodiff import CLASS_WEIGHTS, INPUT_GRAD, GradientError, build_gradient_model

R = np.random.default_rng(13)


def normal(*shape):
    return R.standard_normal(shape)


def positive(*shape):
    return R.uniform(0.5, 2.0, size=shape)


# ---------------------------------------------------------------------- Conv and ConvTranspose
CONV = [
    Case("Conv stride 2 odd sizes (output_padding 1, 0)", "y = Conv <pads = [1, 1, 1, 1], strides = [2, 2]> (x, w, b)",
         (1, 2, 6, 7), {"w": normal(3, 2, 3, 3), "b": normal(3)}),
    Case("Conv stride 3x2 asymmetric pads", "y = Conv <pads = [0, 1, 2, 0], strides = [3, 2]> (x, w, b)",
         (2, 2, 7, 6), {"w": normal(2, 2, 3, 2), "b": normal(2)}),
    Case("Conv dilations 2", "y = Conv <pads = [2, 2, 2, 2], dilations = [2, 2]> (x, w)",
         (1, 2, 7, 7), {"w": normal(2, 2, 3, 3)}),
    Case("Conv dilations with strides", "y = Conv <pads = [1, 0, 1, 1], strides = [2, 2], dilations = [2, 1]> (x, w)",
         (1, 2, 8, 7), {"w": normal(3, 2, 3, 3)}),
    Case("Conv groups 2", "y = Conv <pads = [1, 1, 1, 1], group = 2> (x, w, b)",
         (1, 4, 5, 5), {"w": normal(6, 2, 3, 3), "b": normal(6)}),
    Case("Conv groups 2 stride 2", "y = Conv <group = 2, strides = [2, 2]> (x, w)",
         (2, 4, 6, 5), {"w": normal(4, 2, 2, 2)}),
    Case("Conv depthwise stride 2", "y = Conv <pads = [1, 1, 1, 1], group = 3, strides = [2, 2]> (x, w, b)",
         (1, 3, 6, 5), {"w": normal(3, 1, 3, 3), "b": normal(3)}),
    Case("Conv depthwise multiplier 2", "y = Conv <pads = [1, 1, 1, 1], group = 2> (x, w)",
         (1, 2, 5, 5), {"w": normal(4, 1, 3, 3)}),
    # strided depthwise: the zero-stuffed stride-1 adjoint (a 1×1 unit ConvTranspose scatters g, then a depthwise Conv)
    Case("Conv depthwise stride 2 odd sizes asymmetric pads", "y = Conv <pads = [2, 1, 0, 2], group = 3, strides = [2, 2]> (x, w)",
         (2, 3, 7, 8), {"w": normal(3, 1, 5, 5)}),
    Case("Conv depthwise stride 3x2 dilated", "y = Conv <pads = [1, 2, 2, 1], group = 2, strides = [3, 2], dilations = [2, 2]> (x, w, b)",
         (1, 2, 9, 7), {"w": normal(2, 1, 3, 2), "b": normal(2)}),
    Case("Conv depthwise multiplier 2 stride 2", "y = Conv <pads = [1, 1, 1, 1], group = 2, strides = [2, 2]> (x, w)",
         (1, 2, 6, 5), {"w": normal(4, 1, 3, 3)}),
    Case("Conv depthwise stride 2 1x1 kernel", "y = Conv <group = 3, strides = [2, 2]> (x, w)",
         (1, 3, 5, 6), {"w": normal(3, 1, 1, 1)}),
    Case("Conv SAME_UPPER stride 2", "y = Conv <auto_pad = \"SAME_UPPER\", strides = [2, 2]> (x, w)",
         (1, 2, 6, 5), {"w": normal(2, 2, 3, 3)}),
    Case("Conv SAME_LOWER stride 2 even kernel", "y = Conv <auto_pad = \"SAME_LOWER\", strides = [2, 2]> (x, w)",
         (1, 2, 5, 6), {"w": normal(2, 2, 4, 2)}),
    Case("Conv SAME_UPPER dilated", "y = Conv <auto_pad = \"SAME_UPPER\", dilations = [2, 2]> (x, w)",
         (1, 2, 5, 5), {"w": normal(2, 2, 2, 3)}, ort=False),  # onnxruntime refuses dilated SAME Conv
    Case("Conv VALID stride 2", "y = Conv <auto_pad = \"VALID\", strides = [2, 2]> (x, w, b)",
         (1, 2, 7, 6), {"w": normal(2, 2, 3, 3), "b": normal(2)}),
    Case("Conv 1x1 stride 2", "y = Conv <strides = [2, 2]> (x, w)", (2, 3, 5, 4), {"w": normal(4, 3, 1, 1)}),
    Case("Conv 1-D stride 2", "y = Conv <pads = [1, 1], strides = [2]> (x, w, b)",
         (2, 2, 9), {"w": normal(3, 2, 3), "b": normal(3)}),
    Case("Conv 1-D depthwise dilated", "y = Conv <pads = [3, 2], dilations = [3], group = 2> (x, w)",
         (2, 2, 8), {"w": normal(2, 1, 3)}),
    Case("Conv opset 13", "y = Conv <pads = [1, 1, 1, 1], strides = [2, 2]> (x, w)",
         (1, 2, 5, 5), {"w": normal(2, 2, 3, 3)}, opset=13),
    Case("Conv opset 21", "y = Conv <pads = [0, 1, 1, 0], strides = [2, 1]> (x, w)",
         (1, 2, 5, 5), {"w": normal(2, 2, 3, 3)}, opset=21),
    # the kernel or the bias is the differentiated input (a dynamic kernel)
    Case("Conv weight gradient", "y = Conv <pads = [1, 0, 1, 1], strides = [2, 2], dilations = [1, 2]> (d, x)",
         (3, 2, 3, 2), {"d": normal(2, 2, 6, 7)}),
    Case("Conv weight gradient groups 2", "y = Conv <pads = [1, 1, 1, 1], group = 2, strides = [2, 2]> (d, x)",
         (4, 1, 3, 3), {"d": normal(2, 2, 5, 5)}),
    Case("Conv weight gradient 1-D", "y = Conv <strides = [2]> (d, x)", (2, 3, 3), {"d": normal(2, 3, 8)}),
    Case("Conv bias gradient", "y = Conv <pads = [1, 1, 1, 1]> (d, w, x)", (3,),
         {"d": normal(2, 2, 4, 4), "w": normal(3, 2, 3, 3)}),
]

CONV_TRANSPOSE = [
    Case("ConvTranspose stride 2", "y = ConvTranspose <strides = [2, 2]> (x, w)",
         (1, 2, 3, 3), {"w": normal(2, 3, 3, 3)}),
    Case("ConvTranspose pads output_padding", "y = ConvTranspose <strides = [2, 2], pads = [1, 0, 1, 2], "
         "output_padding = [1, 1]> (x, w, b)", (2, 2, 3, 4), {"w": normal(2, 2, 3, 3), "b": normal(2)}),
    Case("ConvTranspose dilations", "y = ConvTranspose <dilations = [2, 2], pads = [1, 1, 1, 1]> (x, w)",
         (1, 2, 4, 3), {"w": normal(2, 2, 3, 3)}),
    Case("ConvTranspose stride 3 dilation 2", "y = ConvTranspose <strides = [3, 1], dilations = [2, 2], "
         "output_padding = [2, 0]> (x, w)", (1, 2, 3, 3), {"w": normal(2, 1, 2, 3)}),
    Case("ConvTranspose groups 2", "y = ConvTranspose <group = 2, strides = [2, 2], pads = [1, 1, 1, 1]> (x, w, b)",
         (1, 4, 3, 3), {"w": normal(4, 3, 3, 3), "b": normal(6)}),
    Case("ConvTranspose depthwise", "y = ConvTranspose <group = 3, strides = [2, 2]> (x, w)",
         (1, 3, 3, 3), {"w": normal(3, 1, 3, 3)}),
    Case("ConvTranspose SAME_UPPER stride 2", "y = ConvTranspose <auto_pad = \"SAME_UPPER\", strides = [2, 2]> (x, w)",
         (1, 2, 3, 3), {"w": normal(2, 2, 3, 2)}),
    Case("ConvTranspose SAME_LOWER stride 2", "y = ConvTranspose <auto_pad = \"SAME_LOWER\", strides = [2, 2]> (x, w)",
         (1, 2, 3, 3), {"w": normal(2, 2, 3, 2)}),
    Case("ConvTranspose SAME_UPPER output_shape", "y = ConvTranspose <auto_pad = \"SAME_UPPER\", strides = [2, 2], "
         "output_shape = [4, 5]> (x, w)", (1, 2, 3, 3), {"w": normal(2, 2, 3, 3)}),
    Case("ConvTranspose SAME_LOWER output_shape", "y = ConvTranspose <auto_pad = \"SAME_LOWER\", strides = [2, 2], "
         "output_shape = [4, 5]> (x, w)", (1, 2, 3, 3), {"w": normal(2, 2, 3, 3)}),
    Case("ConvTranspose VALID", "y = ConvTranspose <auto_pad = \"VALID\", strides = [2, 2]> (x, w)",
         (1, 2, 3, 2), {"w": normal(2, 2, 2, 3)}),
    Case("ConvTranspose 1-D", "y = ConvTranspose <strides = [2], pads = [1, 0], output_padding = [1]> (x, w, b)",
         (2, 2, 4), {"w": normal(2, 3, 3), "b": normal(3)}),
    Case("ConvTranspose opset 21", "y = ConvTranspose <strides = [2, 2], pads = [1, 1, 0, 0]> (x, w)",
         (1, 2, 3, 3), {"w": normal(2, 2, 3, 3)}, opset=21),
    Case("ConvTranspose weight gradient", "y = ConvTranspose <strides = [2, 2], pads = [1, 0, 0, 1], "
         "dilations = [1, 2], output_padding = [1, 0]> (d, x)", (2, 3, 3, 2), {"d": normal(2, 2, 3, 4)}),
    Case("ConvTranspose weight gradient groups 2", "y = ConvTranspose <group = 2, strides = [2, 2]> (d, x)",
         (4, 1, 2, 2), {"d": normal(2, 4, 3, 3)}),
    Case("ConvTranspose bias gradient", "y = ConvTranspose <strides = [2, 2]> (d, w, x)", (3,),
         {"d": normal(2, 2, 3, 3), "w": normal(2, 3, 2, 2)}),
]

# ---------------------------------------------------------------------- pooling
POOLING = [
    Case("MaxPool 3x3 stride 2 pads (resnet stem)", "y = MaxPool <kernel_shape = [3, 3], strides = [2, 2], "
         "pads = [1, 1, 1, 1]> (x)", (2, 2, 6, 7)),
    Case("MaxPool 3x3 stride 1 overlapping", "y = MaxPool <kernel_shape = [3, 3]> (x)", (1, 2, 5, 6)),
    Case("MaxPool 2x2 ceil_mode", "y = MaxPool <kernel_shape = [2, 2], strides = [2, 2], ceil_mode = 1> (x)",
         (1, 2, 5, 5)),
    Case("MaxPool ceil_mode with pads", "y = MaxPool <kernel_shape = [3, 3], strides = [2, 2], pads = [1, 0, 1, 0], "
         "ceil_mode = 1> (x)", (1, 2, 6, 6)),
    Case("MaxPool dilations", "y = MaxPool <kernel_shape = [2, 2], dilations = [2, 2]> (x)", (1, 2, 5, 5)),
    Case("MaxPool dilations strides pads", "y = MaxPool <kernel_shape = [2, 3], strides = [2, 1], dilations = [2, 1], "
         "pads = [1, 1, 1, 0]> (x)", (1, 2, 6, 5)),
    Case("MaxPool SAME_UPPER", "y = MaxPool <kernel_shape = [3, 2], strides = [2, 1], auto_pad = \"SAME_UPPER\"> (x)",
         (1, 2, 5, 4)),
    Case("MaxPool VALID", "y = MaxPool <kernel_shape = [3, 3], strides = [2, 2], auto_pad = \"VALID\"> (x)",
         (1, 2, 6, 7)),
    Case("MaxPool 1-D stride 2", "y = MaxPool <kernel_shape = [3], strides = [2], pads = [1, 1]> (x)", (2, 2, 9)),
    Case("MaxPool 1-D stride 1 pads", "y = MaxPool <kernel_shape = [3], pads = [1, 1]> (x)", (2, 2, 6)),
    Case("MaxPool storage_order 1 Indices kept", "y, i = MaxPool <kernel_shape = [3, 3], strides = [2, 2], "
         "storage_order = 1> (x)", (1, 2, 5, 7)),
    Case("MaxPool opset 13", "y = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (x)", (2, 2, 4, 6), opset=13),
    Case("MaxPool opset 21", "y = MaxPool <kernel_shape = [3, 3], strides = [2, 2], pads = [1, 1, 1, 1], "
         "ceil_mode = 1> (x)", (1, 2, 6, 6), opset=21),
    Case("AveragePool 2x2 stride 2", "y = AveragePool <kernel_shape = [2, 2], strides = [2, 2]> (x)", (1, 2, 4, 6)),
    Case("AveragePool pads exclude pad", "y = AveragePool <kernel_shape = [3, 3], strides = [2, 2], "
         "pads = [1, 1, 1, 1]> (x)", (1, 2, 5, 6)),
    Case("AveragePool pads include pad", "y = AveragePool <kernel_shape = [3, 3], strides = [2, 2], "
         "pads = [1, 1, 1, 1], count_include_pad = 1> (x)", (1, 2, 5, 6)),
    Case("AveragePool ceil_mode", "y = AveragePool <kernel_shape = [2, 2], strides = [2, 2], ceil_mode = 1> (x)",
         (1, 2, 5, 5)),
    Case("AveragePool ceil_mode include pad", "y = AveragePool <kernel_shape = [2, 2], strides = [2, 2], "
         "ceil_mode = 1, count_include_pad = 1> (x)", (1, 2, 5, 5)),
    Case("AveragePool ceil_mode pads exclude pad", "y = AveragePool <kernel_shape = [3, 3], strides = [2, 2], "
         "pads = [1, 0, 1, 0], ceil_mode = 1> (x)", (1, 2, 6, 6)),
    Case("AveragePool ceil_mode pads include pad", "y = AveragePool <kernel_shape = [3, 3], strides = [2, 2], "
         "pads = [1, 0, 1, 0], ceil_mode = 1, count_include_pad = 1> (x)", (1, 2, 6, 6)),
    Case("AveragePool 1-D overlapping pads", "y = AveragePool <kernel_shape = [3], pads = [1, 1]> (x)", (2, 2, 6)),
    Case("AveragePool 1-D ceil_mode stride 3", "y = AveragePool <kernel_shape = [3], strides = [3], ceil_mode = 1, "
         "count_include_pad = 1> (x)", (2, 2, 8)),
    Case("AveragePool SAME_UPPER", "y = AveragePool <kernel_shape = [3, 2], strides = [2, 1], "
         "auto_pad = \"SAME_UPPER\"> (x)", (1, 2, 5, 4)),
    Case("AveragePool SAME_LOWER", "y = AveragePool <kernel_shape = [3, 2], strides = [2, 1], "
         "auto_pad = \"SAME_LOWER\"> (x)", (1, 2, 5, 4)),
    Case("AveragePool SAME_UPPER include pad", "y = AveragePool <kernel_shape = [3, 2], strides = [2, 1], "
         "auto_pad = \"SAME_UPPER\", count_include_pad = 1> (x)", (1, 2, 5, 4)),
    Case("AveragePool VALID", "y = AveragePool <kernel_shape = [3, 2], strides = [2, 1], auto_pad = \"VALID\"> (x)",
         (1, 2, 5, 4)),
    Case("AveragePool dilations opset 19", "y = AveragePool <kernel_shape = [2, 2], dilations = [2, 2]> (x)",
         (1, 2, 5, 5), opset=19),
    Case("AveragePool dilations pads opset 19", "y = AveragePool <kernel_shape = [2, 2], strides = [2, 1], "
         "dilations = [2, 1], pads = [1, 1, 1, 0]> (x)", (1, 2, 6, 5), opset=19),
    Case("AveragePool dilations pads include pad opset 19", "y = AveragePool <kernel_shape = [2, 2], "
         "strides = [2, 1], dilations = [2, 1], pads = [1, 1, 1, 0], count_include_pad = 1> (x)", (1, 2, 6, 5),
         opset=19),
    Case("AveragePool dilations ceil_mode opset 21", "y = AveragePool <kernel_shape = [3, 3], strides = [2, 2], "
         "dilations = [2, 2], ceil_mode = 1> (x)", (1, 1, 8, 8), opset=21),
    Case("AveragePool opset 13", "y = AveragePool <kernel_shape = [3, 3], strides = [2, 2], pads = [1, 1, 1, 1]> (x)",
         (1, 2, 5, 5), opset=13),
    Case("GlobalMaxPool", "y = GlobalMaxPool(x)", (2, 3, 3, 4)),
    Case("GlobalMaxPool 1-D", "y = GlobalMaxPool(x)", (2, 3, 5)),
    Case("GlobalAveragePool 1-D", "y = GlobalAveragePool(x)", (2, 3, 5)),
]

# ---------------------------------------------------------------------- normalisation
BN = {"s": normal(3), "b": normal(3), "m": normal(3), "v": positive(3)}
NORMALIZATION = [
    Case("BatchNormalization", "y = BatchNormalization <epsilon = 0.01> (x, s, b, m, v)", (2, 3, 2, 2), BN),
    Case("BatchNormalization 2-D", "y = BatchNormalization(x, s, b, m, v)", (3, 3), BN),
    Case("BatchNormalization 1-D spatial opset 14", "y = BatchNormalization(x, s, b, m, v)", (2, 3, 4), BN, opset=14),
    Case("BatchNormalization opset 21", "y = BatchNormalization <training_mode = 0> (x, s, b, m, v)",
         (2, 3, 2, 2), BN, opset=21),
    Case("BatchNormalization scale gradient", "y = BatchNormalization(d, x, b, m, v)", (3,),
         {"d": normal(2, 3, 2, 2), **BN}),
    Case("BatchNormalization bias gradient", "y = BatchNormalization(d, s, x, m, v)", (3,),
         {"d": normal(2, 3, 2, 2), **BN}),
    Case("BatchNormalization mean gradient", "y = BatchNormalization(d, s, b, x, v)", (3,),
         {"d": normal(2, 3, 2, 2), **BN}),
    Case("BatchNormalization variance gradient", "y = BatchNormalization(d, s, b, m, x)", (3,),
         {"d": normal(2, 3, 2, 2), **BN}, make_x=lambda rng: rng.uniform(0.5, 2.0, size=3)),
    Case("LayerNormalization last axis", "y = LayerNormalization(x, s, b)", (2, 3, 4),
         {"s": normal(4), "b": normal(4)}),
    Case("LayerNormalization axis 1", "y = LayerNormalization <axis = 1, epsilon = 0.01> (x, s, b)", (2, 3, 4),
         {"s": normal(3, 4), "b": normal(3, 4)}),
    Case("LayerNormalization axis -2", "y = LayerNormalization <axis = -2> (x, s, b)", (2, 2, 3, 4),
         {"s": normal(3, 4), "b": normal(3, 4)}),
    Case("LayerNormalization broadcast scale", "y = LayerNormalization <axis = -2> (x, s, b)", (2, 3, 4),
         {"s": normal(1, 4), "b": normal(4)}),
    Case("LayerNormalization no bias", "y = LayerNormalization(x, s)", (3, 5), {"s": normal(5)}),
    # Mean and InvStdDev have the stash type (float32): cast them like the output
    Case("LayerNormalization Mean and InvStdDev used", "n, mu, inv = LayerNormalization(x, s, b)\n"
         " m = CastLike(mu, n)\n i = CastLike(inv, n)\n t = Add(n, m)\n y = Mul(t, i)", (2, 3, 4), {"s": normal(4), "b": normal(4)}),
    Case("LayerNormalization opset 18", "y = LayerNormalization <axis = -1> (x, s, b)", (2, 3, 4),
         {"s": normal(4), "b": normal(4)}, opset=18),
    Case("LayerNormalization opset 21", "y = LayerNormalization <axis = 2> (x, s, b)", (2, 3, 2, 2),
         {"s": normal(2, 2), "b": normal(2, 2)}, opset=21),
    Case("LayerNormalization scale gradient", "y = LayerNormalization(d, x, b)", (4,),
         {"d": normal(2, 3, 4), "b": normal(4)}),
    Case("LayerNormalization bias gradient", "y = LayerNormalization <axis = 1> (d, s, x)", (3, 4),
         {"d": normal(2, 3, 4), "s": normal(3, 4)}),
    Case("InstanceNormalization", "y = InstanceNormalization(x, s, b)", (2, 3, 3, 4),
         {"s": normal(3), "b": normal(3)}),
    Case("InstanceNormalization 1-D epsilon", "y = InstanceNormalization <epsilon = 0.1> (x, s, b)", (2, 3, 5),
         {"s": normal(3), "b": normal(3)}),
    Case("InstanceNormalization scale gradient", "y = InstanceNormalization(d, x, b)", (3,),
         {"d": normal(2, 3, 2, 3), "b": normal(3)}),
    Case("InstanceNormalization bias gradient", "y = InstanceNormalization(d, s, x)", (3,),
         {"d": normal(2, 3, 2, 3), "s": normal(3)}),
    # stash_type = 11 (double): the default (float) makes onnx.reference's function body compute in
    # float32, far too coarse for float64 finite differences
    Case("GroupNormalization", "y = GroupNormalization <num_groups = 2, stash_type = 11> (x, s, b)",
         (2, 4, 2, 3), {"s": normal(4), "b": normal(4)}, opset=21),
    Case("GroupNormalization one group", "y = GroupNormalization <num_groups = 1, epsilon = 0.01, stash_type = 11> "
         "(x, s, b)", (2, 3, 4), {"s": normal(3), "b": normal(3)}, opset=21),
    Case("GroupNormalization one channel per group", "y = GroupNormalization <num_groups = 3, stash_type = 11> "
         "(x, s, b)", (2, 3, 2, 2), {"s": normal(3), "b": normal(3)}, opset=21),
    Case("GroupNormalization scale gradient", "y = GroupNormalization <num_groups = 2, stash_type = 11> (d, x, b)",
         (4,), {"d": normal(2, 4, 3), "b": normal(4)}, opset=21),
    Case("GroupNormalization bias gradient", "y = GroupNormalization <num_groups = 2, stash_type = 11> (d, s, x)",
         (4,), {"d": normal(2, 4, 3), "s": normal(4)}, opset=21),
]

# ---------------------------------------------------------------------- MatMul, Einsum, Gemm
ONE_BY_ONE = np.array([1, 1], np.int64)
LINEAR = [
    Case("MatMul 2-D", "y = MatMul(x, w)", (3, 4), {"w": normal(4, 5)}),
    Case("MatMul batched by 2-D weight", "y = MatMul(x, w)", (2, 3, 4), {"w": normal(4, 2)}),
    Case("MatMul weight by batched x", "y = MatMul(w, x)", (2, 3, 4), {"w": normal(5, 3)}),
    Case("MatMul broadcast batch dims", "y = MatMul(x, w)", (2, 1, 3, 4), {"w": normal(3, 4, 2)}),
    Case("MatMul broadcast batch of x", "y = MatMul(w, x)", (1, 3, 2), {"w": normal(2, 4, 3)}),
    Case("MatMul 1-D left", "y = MatMul(x, w)", (4,), {"w": normal(4, 3)}),
    Case("MatMul 1-D left batched right", "y = MatMul(x, w)", (3,), {"w": normal(2, 3, 4)}),
    Case("MatMul 1-D right", "y = MatMul(x, v)", (2, 3, 4), {"v": normal(4)}),
    Case("MatMul x as 1-D right", "y = MatMul(w, x)", (4,), {"w": normal(2, 3, 4)}),
    Case("MatMul x as batched right of 1-D", "y = MatMul(v, x)", (2, 3, 4), {"v": normal(3)}),
    Case("MatMul dot", "t = MatMul(x, v)\n y = Reshape(t, s)", (4,), {"v": normal(4), "s": ONE_BY_ONE}),
    Case("MatMul self dot", "t = MatMul(x, x)\n y = Reshape(t, s)", (4,), {"s": ONE_BY_ONE}),
    Case("MatMul attention q.kT", "q = MatMul(x, wq)\n k = MatMul(x, wk)\n kt = Transpose <perm = [0, 2, 1]> (k)\n"
         " y = MatMul(q, kt)", (2, 3, 4), {"wq": normal(4, 4), "wk": normal(4, 4)}),
    Case("MatMul x.xT broadcast batch", "a, c = Split <axis = 0> (x, sp)\n t = Transpose <perm = [0, 1, 3, 2]> (x)\n"
         " y = MatMul(a, t)", (2, 2, 3, 2), {"sp": np.array([1, 1], np.int64)}),
    Case("MatMul opset 13", "y = MatMul(x, w)", (2, 3), {"w": normal(3, 2)}, opset=13),
    Case("Einsum matmul", "y = Einsum <equation = \"ij,jk->ik\"> (x, w)", (3, 4), {"w": normal(4, 5)}),
    Case("Einsum implicit output", "y = Einsum <equation = \"ij,jk\"> (x, w)", (3, 4), {"w": normal(4, 2)}),
    Case("Einsum x on the right", "y = Einsum <equation = \"bij,bjk->bki\"> (w, x)", (2, 4, 3),
         {"w": normal(2, 3, 4)}),
    Case("Einsum attention both sides x", "y = Einsum <equation = \"bqd,bkd->bqk\"> (x, x)", (2, 3, 4)),
    Case("Einsum transpose", "y = Einsum <equation = \"ijk->kij\"> (x)", (2, 3, 4)),
    Case("Einsum lone label summed", "y = Einsum <equation = \"ijk,j->i\"> (x, v)", (2, 3, 4), {"v": normal(3)}),
    Case("Einsum outer product", "y = Einsum <equation = \"i,j->ij\"> (x, v)", (3,), {"v": normal(4)}),
    Case("Einsum diagonal", "y = Einsum <equation = \"ii->i\"> (x)", (3, 3)),
    Case("Einsum trace", "t = Einsum <equation = \"ii\"> (x)\n y = Reshape(t, s)", (3, 3), {"s": ONE_BY_ONE}),
    Case("Einsum full sum", "t = Einsum <equation = \"ij->\"> (x)\n y = Reshape(t, s)", (3, 4), {"s": ONE_BY_ONE}),
    Case("Einsum operand summed alone", "y = Einsum <equation = \"ij,k->k\"> (x, v)", (3, 4), {"v": normal(2)}),
    Case("Einsum batched trace with ellipsis", "y = Einsum <equation = \"...ii->...\"> (x)", (2, 3, 3)),
    Case("Einsum diagonal around the ellipsis", "y = Einsum <equation = \"i...i->...\"> (x)", (3, 2, 3)),
    Case("Einsum batched diagonal", "y = Einsum <equation = \"bii,ij->bj\"> (x, w)", (2, 3, 3),
         {"w": normal(3, 2)}),
    Case("Einsum diagonal in the other operand", "y = Einsum <equation = \"ii,ij->j\"> (w, x)", (3, 4),
         {"w": normal(3, 3)}),
    Case("Einsum three operands", "y = Einsum <equation = \"ij,jk,kl->il\"> (a, x, c)", (3, 4),
         {"a": normal(2, 3), "c": normal(4, 2)}),
    Case("Einsum ellipsis", "y = Einsum <equation = \"...ij,jk->...ik\"> (x, w)", (2, 3, 4), {"w": normal(4, 2)}),
    Case("Einsum broadcast ellipsis", "y = Einsum <equation = \"...ij,...jk->...ik\"> (x, w)", (1, 3, 4),
         {"w": normal(2, 4, 2)}),
    Case("Gemm transA", "y = Gemm <transA = 1> (x, w)", (4, 2), {"w": normal(4, 3)}),
    Case("Gemm transA transB x as B", "y = Gemm <transA = 1, transB = 1> (w, x, c)", (2, 4),
         {"w": normal(4, 3), "c": normal(2)}),
]

CASES = CONV + CONV_TRANSPOSE + POOLING + NORMALIZATION + LINEAR


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_rule_matches_finite_differences(case):
    check(case)


# ---------------------------------------------------------------------- onnxruntime as the only oracle
def check_with_onnxruntime(case: Case, dtype, *, eps: float, rtol: float) -> None:
    """Gradient model vs central finite differences, both evaluated by onnxruntime in ``dtype``."""
    model = build_model(case, dtype)
    x = case_input(case, dtype)
    forward = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    score = forward.run(["score"], {"x": x})[0]
    weights = np.random.default_rng(1).standard_normal(score.shape)

    def objective(value):
        return float((forward.run(["score"], {"x": value})[0].astype(np.float64) * weights).sum())

    expected = np.zeros(x.shape)
    for index in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += eps
        minus[index] -= eps
        expected[index] = (objective(plus) - objective(minus)) / (2 * eps)
    gradient = build_gradient_model(model).model
    session = ort.InferenceSession(gradient.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run([INPUT_GRAD], {"x": x, CLASS_WEIGHTS: weights.astype(dtype)})[0]
    scale = max(np.abs(expected).max(), 1e-3)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * scale, err_msg=case.id)


ORT_FLOAT64 = [
    # onnx.reference's BatchNormalization-9 runs in training mode whenever ``momentum`` is set,
    # and the default fills it in: opsets 9–13 always use batch statistics there
    Case("BatchNormalization opset 13", "y = BatchNormalization(x, s, b, m, v)", (2, 3, 2, 2), BN, opset=13),
    Case("MaxPool SAME_LOWER", "y = MaxPool <kernel_shape = [3, 2], strides = [2, 1], auto_pad = \"SAME_LOWER\"> (x)",
         (1, 2, 5, 4)),
]

ORT_LINEAR = [
    Case("ConvTranspose output_shape", "y = ConvTranspose <strides = [2, 2], output_shape = [4, 6]> (x, w, b)",
         (1, 2, 3, 3), {"w": normal(2, 3, 3, 3), "b": normal(3)}),
    Case("ConvTranspose output_shape past the full output", "y = ConvTranspose <strides = [2, 2], "
         "output_shape = [8, 7]> (x, w)", (1, 2, 3, 3), {"w": normal(2, 2, 3, 3)}),
    Case("ConvTranspose output_shape groups 2 1-D", "y = ConvTranspose <strides = [3], group = 2, "
         "output_shape = [8]> (x, w)", (2, 4, 3), {"w": normal(4, 1, 3)}),
    Case("AveragePool ceil_mode overhang 2 include pad", "y = AveragePool <kernel_shape = [3], strides = [3], "
         "ceil_mode = 1, count_include_pad = 1> (x)", (2, 2, 7)),
    Case("AveragePool ceil_mode overhang 2", "y = AveragePool <kernel_shape = [3, 3], strides = [3, 3], "
         "ceil_mode = 1> (x)", (1, 2, 7, 7)),
]


@pytest.mark.parametrize("case", ORT_FLOAT64, ids=lambda c: c.id)
def test_rule_matches_onnxruntime_float64(case):
    check_with_onnxruntime(case, np.float64, eps=1e-6, rtol=1e-5)
    check_with_onnxruntime(case, np.float32, eps=1e-2, rtol=2e-3)


@pytest.mark.parametrize("case", ORT_LINEAR, ids=lambda c: c.id)
def test_linear_rule_matches_onnxruntime_float32(case):
    check_with_onnxruntime(case, np.float32, eps=1.0, rtol=2e-3)


# ---------------------------------------------------------------------- dynamic shapes
def symbolic_model(body: str, dims: str, inits: dict, dtype, opset: int = 17) -> onnx.ModelProto:
    """A model whose input has symbolic dims (e.g. "N, 2, H, W"), as exported with dynamic axes."""
    kind = {np.float32: "float", np.float64: "double"}[dtype]
    model = onnx.parser.parse_model(f"""
        <ir_version: 8, opset_import: ["" : {opset}]>
        case ({kind}[{dims}] x) => ({kind}[N, K] score) {{
            {body}
            score = Flatten <axis = 1> (y)
        }}
    """)
    for name, value in inits.items():
        value = np.asarray(value)
        model.graph.initializer.append(onnx.numpy_helper.from_array(
            value.astype(dtype) if np.issubdtype(value.dtype, np.floating) else value, name))
    onnx.checker.check_model(model, full_check=True)
    return model


DYNAMIC = [
    ("cnn, dynamic batch", "N, 2, 9, 8", """
        c = Conv <pads = [1, 1, 1, 1], strides = [2, 2]> (x, w1, b1)
        n = BatchNormalization(c, s, b, m, v)
        r = Relu(n)
        p = MaxPool <kernel_shape = [3, 3], strides = [2, 2], pads = [1, 1, 1, 1]> (r)
        u = ConvTranspose <strides = [2, 2], output_padding = [1, 0]> (p, w2)
        a = AveragePool <kernel_shape = [3, 3], strides = [2, 2], pads = [1, 1, 1, 1], ceil_mode = 1> (u)
        i = InstanceNormalization(a, s, b)
        y = GlobalMaxPool(i)
    """, {"w1": normal(3, 2, 3, 3), "b1": normal(3), **BN, "w2": normal(3, 3, 2, 2)}, 17, [(3, 2, 9, 8)]),
    ("cnn, dynamic batch and spatial size", "N, 2, H, W", """
        c = Conv <pads = [1, 0, 1, 1], strides = [2, 2]> (x, w1)
        a = AveragePool <kernel_shape = [2, 2], pads = [1, 1, 0, 0]> (c)
        p = MaxPool <kernel_shape = [2, 2], strides = [2, 2], ceil_mode = 1> (a)
        q = GroupNormalization <num_groups = 2, stash_type = 11> (p, s4, b4)
        d = Conv <pads = [1, 1, 1, 1], group = 4> (q, w2)
        t = ConvTranspose <strides = [2, 2], pads = [1, 1, 0, 0]> (d, w3)
        y = GlobalAveragePool(t)
    """, {"w1": normal(4, 2, 3, 3), "s4": normal(4), "b4": normal(4), "w2": normal(4, 1, 3, 3),
          "w3": normal(4, 3, 3, 3)}, 21, [(2, 2, 9, 8), (2, 2, 7, 11)]),
    ("attention, dynamic batch and length", "N, T, 4", """
        q = MatMul(x, wq)
        k = MatMul(x, wk)
        e = Einsum <equation = "bqd,bkd->bqk"> (q, k)
        h = MatMul(e, x)
        y = LayerNormalization(h, s, b)
    """, {"wq": normal(4, 4), "wk": normal(4, 4), "s": normal(4), "b": normal(4)}, 17, [(3, 5, 4), (2, 3, 4)]),
]


@pytest.mark.parametrize("row", DYNAMIC, ids=lambda row: row[0])
def test_dynamic_shapes_stay_dynamic(row):
    """Shapes come from Shape at run time: one gradient model serves every batch (and, where the
    graph leaves them symbolic, every spatial size), matching finite differences and giving each
    sample the same gradient alone or in a batch."""
    _, dims, body, inits, opset, shapes = row
    model64 = symbolic_model(body, dims, inits, np.float64, opset)
    model32 = symbolic_model(body, dims, inits, np.float32, opset)
    gradient = build_gradient_model(model32).model
    assert all(len(node.output) == 1 for node in model32.graph.node)  # the caller's model is untouched
    session = ort.InferenceSession(gradient.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(5)
    for shape in shapes:
        x = rng.standard_normal(shape)
        score = ReferenceEvaluator(model64).run(["score"], {"x": x})[0]
        weights = rng.standard_normal(score.shape)
        expected = finite_difference(model64, x, weights)
        got = session.run([INPUT_GRAD], {"x": x.astype(np.float32), CLASS_WEIGHTS: weights.astype(np.float32)})[0]
        scale = np.abs(expected).max()
        np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-3 * scale, err_msg=f"{row[0]} at {shape}")
        for n in range(shape[0]):  # each sample alone (batch 1) gives the same gradient
            alone = session.run([INPUT_GRAD], {"x": x[n:n + 1].astype(np.float32),
                                               CLASS_WEIGHTS: weights[n:n + 1].astype(np.float32)})[0]
            np.testing.assert_allclose(alone[0], got[n], rtol=1e-5, atol=1e-6 * scale)


def test_global_average_pool_dynamic_spatial_count():
    """GlobalAveragePool over symbolic spatial dims divides by the run-time count."""
    model = symbolic_model("y = GlobalAveragePool(x)", "N, C, H, W", {}, np.float32)
    gradient = build_gradient_model(model).model
    assert any(node.op_type == "ReduceProd" for node in gradient.graph.node)
    session = ort.InferenceSession(gradient.SerializeToString(), providers=["CPUExecutionProvider"])
    for shape in [(2, 3, 4, 5), (1, 2, 3, 3)]:
        weights = np.random.default_rng(0).standard_normal(shape[:2]).astype(np.float32)
        got = session.run([INPUT_GRAD], {"x": np.zeros(shape, np.float32), CLASS_WEIGHTS: weights})[0]
        expected = np.broadcast_to(weights[:, :, None, None] / (shape[2] * shape[3]), shape)
        np.testing.assert_allclose(got, expected, rtol=1e-6)


# ---------------------------------------------------------------------- ties and refusals
def _input_gradient(model: onnx.ModelProto, x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    gradient = build_gradient_model(model).model
    session = ort.InferenceSession(gradient.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([INPUT_GRAD], {"x": x, CLASS_WEIGHTS: weights})[0]


@pytest.mark.parametrize("body", [
    "y = GlobalMaxPool(x)",
    "y = MaxPool <kernel_shape = [3, 3], strides = [3, 3]> (x)",
])
def test_max_pooling_ties_send_each_gradient_to_one_element(body):
    """On a tie (here a constant input) each output's gradient goes to exactly one element, the
    first of its window (onnxruntime's choice), instead of being duplicated or split."""
    model = symbolic_model(body, "N, 2, 3, 3", {}, np.float32)
    weights = np.array([[2.0, -3.0]], np.float32)
    grad = _input_gradient(model, np.ones((1, 2, 3, 3), np.float32), weights)
    expected = np.zeros((1, 2, 3, 3), np.float32)
    expected[0, :, 0, 0] = weights[0]
    np.testing.assert_array_equal(grad, expected)


def test_overlapping_max_pool_windows_add_up():
    """An element that is the max of several overlapping windows receives the sum of their
    gradients (MaxUnpool would keep only one)."""
    x = np.zeros((1, 1, 1, 5), np.float32)
    x[0, 0, 0, 2] = 1.0  # the max of all three windows of width 3
    model = symbolic_model("y = MaxPool <kernel_shape = [1, 3]> (x)", "N, 1, 1, 5", {}, np.float32)
    grad = _input_gradient(model, x, np.array([[1.0, 2.0, 4.0]], np.float32))
    np.testing.assert_array_equal(grad.ravel(), [0, 0, 7, 0, 0])


@pytest.mark.parametrize("dims, body, opset, message", [
    ("N, 2, H, W", "y = AveragePool <kernel_shape = [2, 2], strides = [2, 2], ceil_mode = 1> (x)", 17, "ceil_mode"),
    ("N, 2, H, W", "y = Conv <auto_pad = \"SAME_UPPER\", strides = [2, 2]> (x, w)", 17, "static spatial"),
    ("4, 1, 3", "y = Einsum <equation = \"i...,i...->i...\"> (x, e)", 17, r"'i\.\.\.,i\.\.\.->i\.\.\.'"),
    ("N, 2, 2, 2", "y = BatchNormalization <training_mode = 1> (x, s, b, m, v)", 17, "training mode"),
    ("N, 4, 2", "y = GroupNormalization <num_groups = 2> (x, s, b)", 18, "opset 21"),
])
def test_unsupported_configurations_fail_when_building(dims, body, opset, message):
    """What a rule cannot differentiate is a GradientError naming the node, never a wrong graph."""
    inits = {"w": normal(2, 2, 3, 3), "e": normal(4, 2, 3)}  # x's ellipsis [1, 3] broadcasts against e's [2, 3]
    inits.update({name: value[:2] for name, value in BN.items()})
    inits = {name: value for name, value in inits.items() if name in body.split("(")[-1]}
    model = onnx.parser.parse_model(f"""
        <ir_version: 8, opset_import: ["" : {opset}]>
        case (float[{dims}] x) => (float[N, K] score) {{
            {body}
            score = Flatten <axis = 1> (y)
        }}
    """)  # not checked: onnx.checker rejects GroupNormalization-18 outright
    for name, value in inits.items():
        model.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(value, np.float32), name))
    with pytest.raises(GradientError, match=message):
        build_gradient_model(model)
