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
from jaxbp.layers.conv import Conv2DParams, conv2d
from jaxbp.layers.dropout import dropout
from jaxbp.layers.lstm import LSTMParams, lstm
from jaxbp.layers.norm import LayerNormParams, layer_norm
from jaxbp.layers.pooling import avg_pool, flatten, max_pool
from jaxbp.layers.recurrent import EmbeddingParams, RNNParams, embedding, last_step, rnn

__all__ = [
    "ACTIVATIONS",
    "INITIALIZERS",
    "Conv2DParams",
    "DenseParams",
    "EmbeddingParams",
    "LSTMParams",
    "LayerNormParams",
    "RNNParams",
    "avg_pool",
    "conv2d",
    "dropout",
    "embedding",
    "flatten",
    "last_step",
    "layer_norm",
    "lstm",
    "max_pool",
    "rnn",
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
