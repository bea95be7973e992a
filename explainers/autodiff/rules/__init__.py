"""Vector-Jacobian rules, one module per op family; importing this package registers them."""

from . import activations, conv, elementwise, indexing, linear, normalization, pooling, reduce, resize, shape, softmax  # noqa: F401
