"""A tanh RNN with backprop through time, and last-step selection.

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
from jax import lax

from jaxbp._core import (Array, Layer, check_dy, check_float_input, check_input_shape,
                         check_param_shapes)
from jaxbp._validate import positive_int
from jaxbp.layers._sequence import affine_grads, check_sequence, recurrent_weights, time_major
from jaxbp.layers._shared import bias_shape, shape_token, token_shape
from jaxbp.layers.initializers import Initializer


class RNNParams(NamedTuple):
    """Parameters of :func:`rnn`: ``w_xh: (d_in, d_h)``, ``w_hh: (d_h, d_h)``, ``b_h: (d_h,)``."""

    w_xh: Array
    w_hh: Array
    b_h: Array


class RNNCache(NamedTuple):
    """The forward's input ``x: (batch, T, d_in)`` and hidden states ``h: (batch, T, d_h)``."""

    x: Array
    h: Array


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
    d_h = positive_int("rnn", "d_hidden", d_hidden, "rnn(16)")
    name = f"rnn({d_h})"
    draw = recurrent_weights(name, d_h, d_h, w_init, recurrent_init, dtype)

    def init(key, input_shape):
        t, w_xh, w_hh = draw(key, input_shape)
        return RNNParams(w_xh, w_hh, jnp.zeros((d_h,), w_xh.dtype)), (t, d_h)

    expected = {"w_xh": ("d_in", d_h), "w_hh": (d_h, d_h), "b_h": (d_h,)}

    def forward(params, x, *, key=None):
        check_param_shapes(name, params, expected)  # static shapes: trace time only
        w_xh, w_hh, b_h = params
        check_float_input(name, x)
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
        check_dy(name, dy, h.shape)

        def step(dz_next, inputs):
            dy_t, h_t = inputs
            dz = (dy_t + dz_next @ w_hh.T) * (1.0 - h_t * h_t)
            return dz, dz

        dz_end = jnp.zeros_like(h[:, 0])
        _, dzs = lax.scan(step, dz_end, (time_major(dy), time_major(h)), reverse=True)
        dz = time_major(dzs)                                   # (batch, T, d_h)
        dw_xh, dw_hh, db_h, dx = affine_grads(x, h, dz, w_xh)
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
        return x[:, -1], shape_token(x)

    def backward(params, token, dy):
        shape = token_shape(token)
        check_dy(name, dy, (shape[0], *shape[2:]))
        t = shape[1]
        zeros = jnp.zeros((dy.shape[0], t - 1, *dy.shape[1:]), dy.dtype)
        return (), jnp.concatenate([zeros, dy[:, None]], axis=1)

    return Layer(init, forward, backward, name)

