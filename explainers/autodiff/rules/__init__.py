"""Vector-Jacobian rules, one module per op family; importing this package registers them."""

from . import (  # noqa: F401
    activations,
    conv,
    deeplift,
    elementwise,
    indexing,
    linear,
    normalization,
    pooling,
    reduce,
    resize,
    shape,
    softmax,
)
