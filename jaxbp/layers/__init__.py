"""Layers, one family per file; each is a ``Layer(init, forward, backward)``."""

from jaxbp.layers.activations import (
    ACTIVATIONS,
    elu,
    gelu,
    identity,
    leaky_relu,
    relu,
    sigmoid,
    softmax,
    softplus,
    tanh,
)
from jaxbp.layers.dense import (
    INITIALIZERS,
    DenseParams,
    dense,
    glorot_normal,
    glorot_uniform,
    he_normal,
    he_uniform,
)

__all__ = [
    "ACTIVATIONS",
    "INITIALIZERS",
    "DenseParams",
    "dense",
    "elu",
    "gelu",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "identity",
    "leaky_relu",
    "relu",
    "sigmoid",
    "softmax",
    "softplus",
    "tanh",
]
