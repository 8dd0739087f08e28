"""Long short-term memory with backprop through time.

Gate layout: the four gates sit side by side in the columns of ``w_x``, ``w_h`` and ``b``, in
the order **input, forget, cell candidate, output** — block ``k`` is columns
``[k d_h, (k + 1) d_h)``. Forward over ``x: (batch, T, d_in)`` with ``h_{-1} = c_{-1} = 0``::

    a_t = x_t @ w_x + h_{t-1} @ w_h + b                      (batch, 4 d_h)
    i_t, f_t, o_t = sigmoid(a_t[i]), sigmoid(a_t[f]), sigmoid(a_t[o])
    g_t = tanh(a_t[g])                                        each (batch, d_h)
    c_t = f_t * c_{t-1} + i_t * g_t
    h_t = o_t * tanh(c_t)
    y   = (h_0, ..., h_{T-1})                                 (batch, T, d_h)

Backward through time, given ``dy: (batch, T, d_h)``: a reverse ``lax.scan`` carries
``(dh_next, dc_next)``, the gradients reaching ``h_t`` and ``c_t`` from step ``t + 1``::

    dh_t  = dy_t + dh_next
    do_t  = dh_t * tanh(c_t)
    dc_t  = dc_next + dh_t * o_t * (1 - tanh(c_t)^2)
    di_t  = dc_t * g_t,   dg_t = dc_t * i_t,   df_t = dc_t * c_{t-1}
    da_t  = [di i(1-i), df f(1-f), dg (1-g^2), do o(1-o)]     (batch, 4 d_h)
    dh_next <- da_t @ w_h^T,   dc_next <- dc_t * f_t

then all steps at once: ``dw_x = sum_t x_t^T da_t`` ``(d_in, 4 d_h)``,
``dw_h = sum_t h_{t-1}^T da_t`` ``(d_h, 4 d_h)``, ``db = sum da`` ``(4 d_h,)``,
``dx_t = da_t @ w_x^T`` ``(batch, T, d_in)``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxbp._core import Array, Layer, check_dy, check_float_input, check_param_shapes
from jaxbp._validate import positive_int
from jaxbp.layers._sequence import (affine_grads, check_sequence, recurrent_weights, shift_right,
                                    time_major)
from jaxbp.layers._shared import bias_shape
from jaxbp.layers.initializers import Initializer


class LSTMParams(NamedTuple):
    """Parameters of :func:`lstm`, gates ``[input, forget, cell, output]`` side by side:
    ``w_x: (d_in, 4 d_h)``, ``w_h: (d_h, 4 d_h)``, ``b: (4 d_h,)``."""

    w_x: Array
    w_h: Array
    b: Array


class LSTMCache(NamedTuple):
    """Kept for BPTT: input ``x``, hidden ``h``, cell ``c`` and gate activations
    ``gates = [i, f, g, o]`` (after their nonlinearities), all batch-first."""

    x: Array
    h: Array
    c: Array
    gates: Array


def lstm(d_hidden: int, *, w_init: str | Initializer = "glorot_uniform",
         recurrent_init: str | Initializer = "glorot_uniform", forget_bias: float = 1.0,
         dtype=None) -> Layer:
    """LSTM over ``(batch, T, d_in)`` returning every hidden state ``(batch, T, d_h)``.

    Forward: ``a_t = x_t w_x + h_{t-1} w_h + b`` split into gates ``[i, f, g, o]``;
    ``c_t = f c_{t-1} + i g``, ``h_t = o tanh(c_t)`` (``i, f, o`` sigmoids, ``g`` tanh).

    Backward through time (``dy: (batch, T, d_h)``), reverse scan carrying ``(dh, dc)``:
    ``dc_t = dc_{t+1} f_{t+1} + dh_t o_t (1 - tanh^2 c_t)``; gate pre-activation gradient
    ``da_t = [dc g i(1-i), dc c_{t-1} f(1-f), dc i (1-g^2), dh tanh(c) o(1-o)]``;
    ``dh_{t-1} += da_t w_h^T``. Then ``dw_x = sum_t x_t^T da_t``, ``dw_h = sum_t h_{t-1}^T da_t``,
    ``db = sum da``, ``dx = da w_x^T``.

    Args:
      d_hidden: hidden (and cell) size ``d_h``.
      w_init, recurrent_init: initialisers of ``w_x`` and ``w_h``.
      forget_bias: initial value of the forget gate's bias block (1.0 keeps memory early in
        training); the other biases start at 0.
      dtype: parameter dtype; ``None`` uses JAX's default float.
    """
    d_h = positive_int("lstm", "d_hidden", d_hidden, "lstm(16)")
    name = f"lstm({d_h})"
    draw = recurrent_weights(name, d_h, 4 * d_h, w_init, recurrent_init, dtype)

    def init(key, input_shape):
        t, w_x, w_h = draw(key, input_shape)
        b = jnp.zeros((4 * d_h,), w_x.dtype).at[d_h:2 * d_h].set(forget_bias)
        return LSTMParams(w_x, w_h, b), (t, d_h)

    expected = {"w_x": ("d_in", 4 * d_h), "w_h": (d_h, 4 * d_h), "b": (4 * d_h,)}

    def forward(params, x, *, key=None):
        check_param_shapes(name, params, expected)  # static shapes: trace time only
        w_x, w_h, b = params
        check_float_input(name, x)
        check_sequence(name, x, w_x.shape[0])
        xw = x @ w_x + bias_shape(b, 3)

        def step(carry, xw_t):
            h_prev, c_prev = carry
            a = xw_t + h_prev @ w_h
            i = jax.nn.sigmoid(a[:, :d_h])
            f = jax.nn.sigmoid(a[:, d_h:2 * d_h])
            g = jnp.tanh(a[:, 2 * d_h:3 * d_h])
            o = jax.nn.sigmoid(a[:, 3 * d_h:])
            c = f * c_prev + i * g
            h = o * jnp.tanh(c)
            return (h, c), (h, c, jnp.concatenate([i, f, g, o], axis=1))

        zeros = jnp.zeros((x.shape[0], d_h), xw.dtype)
        _, (hs, cs, gs) = lax.scan(step, (zeros, zeros), time_major(xw))
        h, c, gates = time_major(hs), time_major(cs), time_major(gs)
        return h, LSTMCache(x, h, c, gates)

    def backward(params, cache, dy):
        w_x, w_h, _ = params
        x, h, c, gates = cache
        check_dy(name, dy, h.shape)
        c_prev = shift_right(c)

        def step(carry, inputs):
            dh_next, dc_next = carry
            dy_t, c_t, c_prev_t, gates_t = inputs
            i, f, g, o = (gates_t[:, k * d_h:(k + 1) * d_h] for k in range(4))
            dh = dy_t + dh_next
            tc = jnp.tanh(c_t)
            dc = dc_next + dh * o * (1.0 - tc * tc)
            da = jnp.concatenate([
                dc * g * i * (1.0 - i),
                dc * c_prev_t * f * (1.0 - f),
                dc * i * (1.0 - g * g),
                dh * tc * o * (1.0 - o),
            ], axis=1)
            return (da @ w_h.T, dc * f), da

        zeros = jnp.zeros_like(h[:, 0])
        inputs = tuple(map(time_major, (dy, c, c_prev, gates)))
        _, das = lax.scan(step, (zeros, zeros), inputs, reverse=True)
        da = time_major(das)                                     # (batch, T, 4 d_h)
        dw_x, dw_h, db, dx = affine_grads(x, h, da, w_x)
        return LSTMParams(dw_x, dw_h, db), dx

    # jit: an eager call compiles once per shape instead of once per primitive (inlined under
    # an outer jit). Argument checks depend only on static shapes, so they still run.
    return Layer(init, jax.jit(forward), jax.jit(backward), name)
