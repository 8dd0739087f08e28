"""Layers, one family per file; each is a ``Layer(init, forward, backward)``.

Layer files (dense, activations, conv, pooling, dropout, norm (layer and batch norm), recurrent,
lstm, embedding)
import only ``jaxbp._core``, ``jaxbp._validate`` and these helpers, never one another:
``initializers`` (weight initialisers), ``_shared`` (bias broadcasting, parameter-free plumbing,
input-shape checks), ``_windows`` (window arithmetic of conv and pooling), ``_sequence`` (the
recurrences' layout and weights) and ``_matmul`` (dense's CPU weight-gradient layout).
"""

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
from jaxbp.layers.dense import DenseParams, dense
from jaxbp.layers.initializers import (
    INITIALIZERS,
    glorot_normal,
    glorot_uniform,
    he_normal,
    he_uniform,
)
from jaxbp.layers.attention import AttentionParams, multi_head_attention
from jaxbp.layers.branching import add, branches, concat, fan_out
from jaxbp.layers.combinators import residual
from jaxbp.layers.conv import Conv2DParams, conv2d
from jaxbp.layers.dropout import dropout
from jaxbp.layers.embedding import (EmbeddingParams, PositionEmbeddingParams, embedding,
                                    position_embedding)
from jaxbp.layers.lstm import LSTMParams, lstm
from jaxbp.layers.norm import (BatchNormCache, BatchNormEvalCache, BatchNormParams,
                               BatchNormState, LayerNormParams, batch_norm, layer_norm)
from jaxbp.layers.pooling import avg_pool, flatten, max_pool
from jaxbp.layers.recurrent import RNNParams, last_step, rnn

__all__ = [
    "ACTIVATIONS",
    "INITIALIZERS",
    "AttentionParams",
    "BatchNormCache",
    "BatchNormEvalCache",
    "BatchNormParams",
    "BatchNormState",
    "Conv2DParams",
    "DenseParams",
    "EmbeddingParams",
    "LSTMParams",
    "LayerNormParams",
    "PositionEmbeddingParams",
    "RNNParams",
    "add",
    "avg_pool",
    "batch_norm",
    "branches",
    "concat",
    "conv2d",
    "dropout",
    "embedding",
    "fan_out",
    "flatten",
    "last_step",
    "layer_norm",
    "lstm",
    "max_pool",
    "multi_head_attention",
    "position_embedding",
    "residual",
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
