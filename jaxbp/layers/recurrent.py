"""A tanh RNN with backprop through time, last-step selection, and token embeddings.

``rnn`` forward over ``x: (batch, T, d_in)`` with ``h_{-1} = 0``::

    z_t = x_t @ w_xh + h_{t-1} @ w_hh + b_h         (batch, d_h)
    h_t = tanh(z_t)                                  (batch, d_h)
    y   = (h_0, ..., h_{T-1})                        (batch, T, d_h)

Backward through time, given ``dy: (batch, T, d_h)``: a reverse ``lax.scan`` carries
``dh_next = dL/dh_t`` arriving from step ``t + 1``::

    dh_t   = dy_t + dz_{t+1} @ w_hh^T                (batch, d_h)   (dz_T = 0)
    dz_t   = dh_t * (1 - h_t^2)                      (batch, d_h)

then, outside the scan, all steps at once::

    dw_xh  = sum_t x_t^T dz_t                        (d_in, d_h)
    dw_hh  = sum_t h_{t-1}^T dz_t                    (d_h, d_h)
    db_h   = sum_{t, batch} dz_t                     (d_h,)
    dx_t   = dz_t @ w_xh^T                           (batch, T, d_in)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxbp._core import Array, Layer, check_input_shape, float_dtype
from jaxbp.layers.dense import Initializer, bias_shape, get_initializer


class RNNParams(NamedTuple):
    """Parameters of :func:`rnn`: ``w_xh: (d_in, d_h)``, ``w_hh: (d_h, d_h)``, ``b_h: (d_h,)``."""

    w_xh: Array
    w_hh: Array
    b_h: Array


class RNNCache(NamedTuple):
    """The forward's input ``x: (batch, T, d_in)`` and hidden states ``h: (batch, T, d_h)``."""

    x: Array
    h: Array


def check_positive(name: str, arg: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name}: {arg}={value!r} must be a positive int, e.g. {arg}=16.")
    return int(value)


def check_sequence(name: str, x, d_in: int) -> tuple[int, ...]:
    """Checks ``x: (batch, T, d_in)`` and returns its shape."""
    shape = getattr(x, "shape", None)
    if shape is None:
        raise TypeError(f"{name}: input x must be an array (batch, time, {d_in}), got "
                        f"{type(x).__name__}. Fix: pass jnp.asarray(x).")
    shape = tuple(shape)
    if len(shape) != 3 or shape[2] != d_in:
        raise ValueError(
            f"{name}: input x has shape {shape}, but (batch, time, {d_in}) is expected (d_in "
            f"from init). Fix: pass sequences batch-first, e.g. x.reshape(batch, time, {d_in}).")
    return shape


def sequence_shape(name: str, input_shape) -> tuple[int, int]:
    shape = check_input_shape(name, input_shape)
    if len(shape) != 2:
        raise ValueError(
            f"{name}: input_shape={shape} must be (time, d_in) without the batch axis. Fix: "
            f"e.g. input_shape=(20, 1) for 20 steps of one feature.")
    return shape


def time_major(a: Array) -> Array:
    """``(batch, T, ...) -> (T, batch, ...)``, the layout ``lax.scan`` iterates over."""
    return jnp.swapaxes(a, 0, 1)


def shift_right(h: Array) -> Array:
    """``(h_0, ..., h_{T-1}) -> (0, h_0, ..., h_{T-2})`` along axis 1: each step's ``h_{t-1}``."""
    return jnp.concatenate([jnp.zeros_like(h[:, :1]), h[:, :-1]], axis=1)


def rnn(d_hidden: int, *, w_init: str | Initializer = "glorot_uniform",
        recurrent_init: str | Initializer = "glorot_uniform", dtype=None) -> Layer:
    """Elman RNN ``h_t = tanh(x_t @ w_xh + h_{t-1} @ w_hh + b_h)``, ``h_{-1} = 0``, all steps out.

    Forward: ``x: (batch, T, d_in) -> y = (h_0, ..., h_{T-1}): (batch, T, d_h)`` by ``lax.scan``.

    Backward through time (reverse ``lax.scan``), ``dy: (batch, T, d_h)``:
    ``dz_t = (dy_t + dz_{t+1} @ w_hh^T) * (1 - h_t^2)``; then ``dw_xh = sum_t x_t^T dz_t``
    ``(d_in, d_h)``, ``dw_hh = sum_t h_{t-1}^T dz_t`` ``(d_h, d_h)``, ``db_h = sum dz``
    ``(d_h,)``, ``dx_t = dz_t @ w_xh^T`` ``(batch, T, d_in)``.

    Args:
      d_hidden: hidden size ``d_h``.
      w_init, recurrent_init: initialisers of ``w_xh`` and ``w_hh`` (names as for ``dense``, or
        callables); ``b_h`` starts at 0.
      dtype: parameter dtype; ``None`` uses JAX's default float.

    Examples:
      >>> import jax, jaxbp as bp
      >>> net = bp.serial(bp.rnn(8), bp.last_step(), bp.dense(1))
      >>> params, shape = net.init(jax.random.key(0), (5, 3))
      >>> shape
      (1,)
    """
    d_h = check_positive("rnn", "d_hidden", d_hidden)
    name = f"rnn({d_h})"
    # jitted draws (shape and dtype static): one compile per shape, not one per primitive
    w_initializer = jax.jit(get_initializer(name, w_init), static_argnums=(1, 2))
    h_initializer = jax.jit(get_initializer(name, recurrent_init), static_argnums=(1, 2))

    def init(key, input_shape):
        t, d_in = sequence_shape(name, input_shape)
        k_x, k_h = jax.random.split(key)
        w_xh = w_initializer(k_x, (d_in, d_h), dtype)
        w_hh = h_initializer(k_h, (d_h, d_h), dtype).astype(w_xh.dtype)
        return RNNParams(w_xh, w_hh, jnp.zeros((d_h,), w_xh.dtype)), (t, d_h)

    def forward(params, x, *, key=None):
        w_xh, w_hh, b_h = params
        check_sequence(name, x, w_xh.shape[0])
        xw = x @ w_xh + bias_shape(b_h, 3)   # the input's share of every step at once

        def step(h_prev, xw_t):
            h = jnp.tanh(xw_t + h_prev @ w_hh)
            return h, h

        h0 = jnp.zeros((x.shape[0], d_h), xw.dtype)
        _, hs = lax.scan(step, h0, time_major(xw))
        h = time_major(hs)
        return h, RNNCache(x, h)

    def backward(params, cache, dy):
        w_xh, w_hh, _ = params
        x, h = cache

        def step(dz_next, inputs):
            dy_t, h_t = inputs
            dz = (dy_t + dz_next @ w_hh.T) * (1.0 - h_t * h_t)
            return dz, dz

        dz_end = jnp.zeros_like(h[:, 0])
        _, dzs = lax.scan(step, dz_end, (time_major(dy), time_major(h)), reverse=True)
        dz = time_major(dzs)                                   # (batch, T, d_h)
        dw_xh = jnp.einsum("bti,bth->ih", x, dz)
        dw_hh = jnp.einsum("btj,bth->jh", shift_right(h), dz)
        db_h = jnp.sum(dz, axis=(0, 1))
        dx = dz @ w_xh.T
        return RNNParams(dw_xh, dw_hh, db_h), dx

    # jit: an eager call compiles once per shape instead of once per primitive (inlined under
    # an outer jit). Argument checks depend only on static shapes, so they still run.
    return Layer(init, jax.jit(forward), jax.jit(backward), name)


def last_step() -> Layer:
    """Keeps the last time step: ``y = x[:, -1]``, ``(batch, T, d) -> (batch, d)`` (no params).

    Backward: ``dx[:, T-1] = dy`` and ``dx[:, t] = 0`` for ``t < T - 1``, ``(batch, T, d)``.
    """
    name = "last_step"

    def init(key, input_shape):
        shape = check_input_shape(name, input_shape, min_rank=2)
        return (), shape[1:]

    def forward(params, x, *, key=None):
        shape = getattr(x, "shape", None)
        if shape is None or len(shape) < 3:
            raise ValueError(
                f"{name}: input x has shape {shape}, but (batch, time, ...) is expected. Fix: "
                f"put last_step() after a recurrent layer that returns every step.")
        return x[:, -1], jnp.zeros((0, *x.shape[1:]), x.dtype)  # zero-size shape token

    def backward(params, token, dy):
        t = token.shape[1]
        zeros = jnp.zeros((dy.shape[0], t - 1, *dy.shape[1:]), dy.dtype)
        return (), jnp.concatenate([zeros, dy[:, None]], axis=1)

    return Layer(init, forward, backward, name)


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
    vocab = check_positive("embedding", "vocab_size", vocab_size)
    d = check_positive("embedding", "d", d)
    name = f"embedding({vocab}, {d})"

    def init(key, input_shape):
        shape = check_input_shape(name, input_shape)
        table = scale * jax.random.normal(key, (vocab, d), float_dtype(dtype))
        return EmbeddingParams(table), (*shape, d)

    def forward(params, tokens, *, key=None):
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
        dtable = jnp.zeros_like(params.table).at[tokens].add(dy)
        return EmbeddingParams(dtable), np.zeros(tokens.shape, jax.dtypes.float0)

    return Layer(init, forward, backward, name)
