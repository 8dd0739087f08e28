"""Token embeddings: a lookup table whose gradient is a scatter-add.

Forward for integer ``tokens: (batch, ...)`` and ``table: (vocab_size, d)``::

    y[n, ...] = table[tokens[n, ...]]                 (batch, ..., d)

Backward, given ``dy: (batch, ..., d)``::

    dtable[v] = sum over positions with token v of dy (vocab_size, d)   repeated tokens add up
    dx        = float0 zeros shaped like the tokens    integer inputs have no gradient
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp._core import (Array, Layer, check_dy, check_input_shape, check_param_shapes,
                         float_dtype)
from jaxbp._validate import positive_int


class EmbeddingParams(NamedTuple):
    """Parameters of :func:`embedding`: ``table: (vocab_size, d)``, one row per token."""

    table: Array


def embedding(vocab_size: int, d: int, *, scale: float = 1.0, dtype=None) -> Layer:
    """Token lookup ``y[n, ...] = table[tokens[n, ...]]``: ``(batch, ...) -> (batch, ..., d)``.

    Backward (``dy: (batch, ..., d)``): ``dtable[v] = sum over positions with token v of dy``
    ``(vocab_size, d)`` — a scatter-add, so repeated tokens accumulate. Integer tokens have no
    gradient: ``dx`` is a ``float0`` zero array shaped like the tokens, as ``jax.vjp`` gives.

    Args:
      vocab_size: number of distinct tokens; tokens must lie in ``[0, vocab_size)``. This is
        checked (``ValueError``) when ``forward`` runs eagerly; under ``jit`` the values are
        unknown, and an out-of-range id would be clamped by the lookup but dropped by the
        backward's scatter-add — so check token ranges before compiling a training loop.
      d: embedding size.
      scale: rows start as ``scale * N(0, 1)``.
      dtype: parameter dtype; ``None`` uses JAX's default float.
    """
    vocab = positive_int("embedding", "vocab_size", vocab_size, "embedding(1000, 32)")
    d = positive_int("embedding", "d", d, "embedding(1000, 32)")
    name = f"embedding({vocab}, {d})"

    def init(key, input_shape):
        shape = check_input_shape(name, input_shape)
        table = scale * jax.random.normal(key, (vocab, d), float_dtype(dtype))
        return EmbeddingParams(table), (*shape, d)

    expected = {"table": (vocab, d)}

    def forward(params, tokens, *, key=None):
        check_param_shapes(name, params, expected)  # static shapes: trace time only
        dt = getattr(tokens, "dtype", None)
        if dt is None or not jnp.issubdtype(dt, jnp.integer):
            raise TypeError(
                f"{name}: tokens must be an integer array (batch, ...), got "
                f"{type(tokens).__name__} of dtype {dt}. Fix: tokens.astype(jnp.int32).")
        if tokens.size and not isinstance(tokens, jax.core.Tracer):
            lo, hi = int(jnp.min(tokens)), int(jnp.max(tokens))
            if lo < 0 or hi >= vocab:
                raise ValueError(
                    f"{name}: tokens range over [{lo}, {hi}], outside [0, {vocab}). Fix: map "
                    f"tokens into range or raise vocab_size to at least {hi + 1}.")
        return params.table[tokens], tokens

    def backward(params, tokens, dy):
        check_dy(name, dy, (*tokens.shape, d))
        dtable = jnp.zeros_like(params.table).at[tokens].add(dy)
        return EmbeddingParams(dtable), np.zeros(tokens.shape, jax.dtypes.float0)

    return Layer(init, forward, backward, name)
