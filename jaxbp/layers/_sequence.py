"""Shared by the recurrent layers (``rnn``, ``lstm``): batch-first sequence checks, the
time-major layout ``lax.scan`` walks, and the parts of a recurrence outside the scan.

A recurrent layer of hidden size ``d_h`` computes, at every step, the pre-activation
``a_t = x_t @ w_x + h_{t-1} @ w_h + b`` (``w_x: (d_in, n)``, ``w_h: (d_h, n)``, ``n = d_h``
for ``rnn``, ``4 d_h`` for ``lstm``), with ``h_{-1} = 0``. Given ``da_t`` for every step, the
parameter and input gradients are sums over time taken all at once (:func:`affine_grads`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxbp._core import Array
from jaxbp.layers._shared import example_shape
from jaxbp.layers.initializers import Initializer, jitted_initializer


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
    """Checks ``init``'s ``input_shape`` is ``(time, d_in)`` and returns it."""
    time, d_in = example_shape(name, input_shape, ("time", "d_in"),
                               "e.g. input_shape=(20, 1) for 20 steps of one feature")
    return time, d_in


def time_major(a: Array) -> Array:
    """``(batch, T, ...) -> (T, batch, ...)``, the layout ``lax.scan`` iterates over."""
    return jnp.swapaxes(a, 0, 1)


def shift_right(h: Array) -> Array:
    """``(h_0, ..., h_{T-1}) -> (0, h_0, ..., h_{T-2})`` along axis 1: each step's ``h_{t-1}``."""
    return jnp.concatenate([jnp.zeros_like(h[:, :1]), h[:, :-1]], axis=1)


def recurrent_weights(name: str, d_h: int, width: int, w_init: str | Initializer,
                      recurrent_init: str | Initializer, dtype) -> Callable:
    """``draw(key, input_shape) -> (T, w_x: (d_in, width), w_h: (d_h, width))``.

    ``input_shape`` is ``(T, d_in)``; ``w_x`` is drawn by ``w_init``, ``w_h`` by
    ``recurrent_init`` (cast to ``w_x``'s dtype), from two halves of ``key``.
    """
    w_initializer = jitted_initializer(name, w_init)
    h_initializer = jitted_initializer(name, recurrent_init, "recurrent_init")

    def draw(key, input_shape):
        t, d_in = sequence_shape(name, input_shape)
        k_x, k_h = jax.random.split(key)
        w_x = w_initializer(k_x, (d_in, width), dtype)
        w_h = h_initializer(k_h, (d_h, width), dtype).astype(w_x.dtype)
        return t, w_x, w_h

    return draw


def affine_grads(x: Array, h: Array, da: Array, w_x: Array) -> tuple[Array, Array, Array, Array]:
    """Gradients of ``a_t = x_t @ w_x + h_{t-1} @ w_h + b`` given ``da: (batch, T, n)``.

    Returns ``dw_x = sum_t x_t^T da_t`` ``(d_in, n)``, ``dw_h = sum_t h_{t-1}^T da_t``
    ``(d_h, n)``, ``db = sum_{t, batch} da_t`` ``(n,)`` and ``dx_t = da_t @ w_x^T``
    ``(batch, T, d_in)``; ``h: (batch, T, d_h)`` are the states ``h_0 .. h_{T-1}``.
    """
    dw_x = jnp.einsum("bti,btk->ik", x, da)
    dw_h = jnp.einsum("btj,btk->jk", shift_right(h), da)
    db = jnp.sum(da, axis=(0, 1))
    dx = da @ w_x.T
    return dw_x, dw_h, db, dx


__all__ = ["affine_grads", "check_sequence", "recurrent_weights", "sequence_shape",
           "shift_right", "time_major"]
