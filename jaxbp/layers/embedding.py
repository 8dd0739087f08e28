"""Token and position embeddings: lookup tables whose gradients are sums.

``embedding``, for integer ``tokens: (batch, ...)`` and ``table: (vocab_size, d)``::

    y[n, ...] = table[tokens[n, ...]]                 (batch, ..., d)
    dtable[v] = sum over positions with token v of dy (vocab_size, d)   repeated tokens add up
    dx        = float0 zeros shaped like the tokens    integer inputs have no gradient

``position_embedding``, for ``x: (batch, T, d)`` and ``table: (max_len, d)``, ``T <= max_len``::

    y[n, t] = x[n, t] + table[t]                      (batch, T, d)
    dx      = dy                                      (batch, T, d)   the identity's adjoint
    dtable[t] = sum_n dy[n, t] for t < T, else 0      (max_len, d)    adjoint of the batch broadcast
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp._core import (Array, Layer, check_dy, check_float_input, check_input_shape,
                         check_param_shapes, float_dtype)
from jaxbp._validate import positive_int
from jaxbp.layers._sequence import check_sequence, sequence_shape
from jaxbp.layers._shared import shape_token, token_shape


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


class PositionEmbeddingParams(NamedTuple):
    """Parameters of :func:`position_embedding`: ``table: (max_len, d)``, one row per position."""

    table: Array


def position_embedding(max_len: int, *, scale: float = 0.02, dtype=None) -> Layer:
    """Learned positions ``y[n, t] = x[n, t] + table[t]``: ``(batch, T, d) -> (batch, T, d)``.

    ``table: (max_len, d)``; a sequence of ``T <= max_len`` steps uses its first ``T`` rows, so
    a network initialised for ``max_len`` steps also runs on shorter prefixes (generation).

    Backward (``dy: (batch, T, d)``): ``dx = dy``; ``dtable[t] = sum_n dy[n, t]`` for ``t < T``
    and ``0`` for the rows ``T <= t < max_len`` that the forward did not read ``(max_len, d)`` —
    the sum over the batch is the adjoint of broadcasting one table to every sequence.

    Args:
      max_len: the most positions a sequence may have.
      scale: rows start as ``scale * N(0, 1)``.
      dtype: parameter dtype; ``None`` uses JAX's default float.

    Examples:
      >>> import jax, jaxbp as bp
      >>> layer = bp.position_embedding(16)
      >>> params, shape = layer.init(jax.random.key(0), (10, 8))
      >>> params.table.shape, shape
      ((16, 8), (10, 8))
    """
    max_len = positive_int("position_embedding", "max_len", max_len, "position_embedding(64)")
    name = f"position_embedding({max_len})"

    def init(key, input_shape):
        t, d = sequence_shape(name, input_shape)
        if t > max_len:
            raise ValueError(
                f"{name}: input_shape={tuple(input_shape)} has {t} positions, but the table has "
                f"max_len={max_len} rows. Fix: position_embedding({t}), or shorter sequences.")
        table = scale * jax.random.normal(key, (max_len, d), float_dtype(dtype))
        return PositionEmbeddingParams(table), (t, d)

    expected = {"table": (max_len, "d")}

    def forward(params, x, *, key=None):
        check_param_shapes(name, params, expected)  # static shapes: trace time only
        check_float_input(name, x)
        _, t, _ = check_sequence(name, x, params.table.shape[1])
        if t > max_len:
            raise ValueError(
                f"{name}: input x has shape {tuple(x.shape)}, {t} positions, but the table has "
                f"max_len={max_len} rows. Fix: cut the sequences to at most {max_len} steps or "
                f"build the network with position_embedding({t}).")
        return x + params.table[None, :t], shape_token(x)

    def backward(params, token, dy):
        check_dy(name, dy, token_shape(token))
        t = dy.shape[1]
        dtable = jnp.zeros_like(params.table).at[:t].set(jnp.sum(dy, axis=0))
        return PositionEmbeddingParams(dtable.astype(params.table.dtype)), dy

    return Layer(init, jax.jit(forward), jax.jit(backward), name)


__all__ = ["EmbeddingParams", "PositionEmbeddingParams", "embedding", "position_embedding"]
