"""One registry of layers: adding a line here checks a new layer everywhere.

Each case: a name, a factory making the layer, the input-shape template (``"d"`` is drawn by
hypothesis), and how to keep random inputs off the layer's kinks.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jaxbp as bp


class LayerCase(NamedTuple):
    id: str
    make: Callable[[], bp.Layer]
    rank: int = 1                  # rank of one example (without batch)
    away_from_zero: float = 0.0    # margin keeping inputs off a kink at 0
    make_input: Callable | None = None
    stochastic: bool = False


LAYERS: list[LayerCase] = [
    LayerCase("dense", lambda: bp.dense(3)),
    LayerCase("dense_he", lambda: bp.dense(5, w_init="he_normal")),
    LayerCase("dense_rank3", lambda: bp.dense(4), rank=2),
    LayerCase("identity", bp.identity),
    LayerCase("sigmoid", bp.sigmoid),
    LayerCase("tanh", bp.tanh),
    LayerCase("relu", bp.relu, away_from_zero=0.05),
    LayerCase("leaky_relu", lambda: bp.leaky_relu(0.1), away_from_zero=0.05),
    LayerCase("elu", bp.elu, away_from_zero=0.05),
    LayerCase("softplus", bp.softplus),
    LayerCase("gelu_tanh", lambda: bp.gelu(approximate=True)),
    LayerCase("gelu_erf", lambda: bp.gelu(approximate=False)),
    LayerCase("softmax", bp.softmax),
    LayerCase("serial_mlp", lambda: bp.serial(bp.dense(4), bp.tanh(), bp.dense(2), bp.sigmoid())),
    # Convolutional and recurrent layers (issue 5). Images are (H, W, C) with every size in 1..5,
    # so these use paddings that fit any size; tests/test_conv.py covers VALID and odd strides.
    LayerCase("conv2d_same_s2", lambda: bp.conv2d(3, 3, stride=2), rank=3),
    LayerCase("max_pool_same", lambda: bp.max_pool(3, stride=2, padding="SAME"), rank=3),
    LayerCase("avg_pool_same", lambda: bp.avg_pool(3, stride=2, padding="SAME"), rank=3),
    LayerCase("flatten", bp.flatten, rank=3),
    LayerCase("dropout", lambda: bp.dropout(0.3), rank=2, stochastic=True),
    LayerCase("layer_norm", bp.layer_norm, rank=2),
    LayerCase("rnn", lambda: bp.rnn(4), rank=2),
    LayerCase("lstm", lambda: bp.lstm(3), rank=2),
    LayerCase("last_step", bp.last_step, rank=2),
    LayerCase("embedding", lambda: bp.embedding(6, 3), rank=1,
              make_input=lambda rng, shape: rng.integers(0, 6, shape)),
]
