"""Fully connected layer ``y = x @ w + b``.

Forward (``x: (batch, d_in)``, ``w: (d_in, d_out)``, ``b: (d_out,)``)::

    y = x @ w + b                         (batch, d_out)

Backward, given ``dy = dL/dy`` of shape ``(batch, d_out)``::

    dw = x^T @ dy                         (d_in, d_out)   sum of per-example outer products
    db = sum_batch dy                     (d_out,)        adjoint of broadcasting b over the batch
    dx = dy @ w^T                         (batch, d_in)

In the seed document's column notation ``z = W a + b`` with ``W = w^T``, these are
``dE/dW = dE/dz · a^T`` and ``dE/db = dE/dz``, summed over the examples of the batch.
Extra leading axes (e.g. ``(batch, time, d_in)``) are treated as more batch axes.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from jaxbp._core import (Array, Layer, check_dy, check_float_input, check_input,
                         check_input_shape, check_param_shapes)
from jaxbp._validate import positive_int
from jaxbp.layers._matmul import weight_grad
from jaxbp.layers._shared import bias_shape
from jaxbp.layers.initializers import Initializer, get_initializer


class DenseParams(NamedTuple):
    """Parameters of :func:`dense`: ``w: (d_in, d_out)``, ``b: (d_out,)``."""

    w: Array
    b: Array


def dense(d_out: int, *, w_init: str | Initializer = "glorot_uniform", dtype=None) -> Layer:
    """Fully connected layer ``y = x @ w + b`` with ``DenseParams(w: (d_in, d_out), b: (d_out,))``.

    Args:
      d_out: number of output features.
      w_init: weight initialiser: ``"glorot_uniform"`` (default, for tanh/sigmoid),
        ``"glorot_normal"``, ``"he_normal"`` / ``"he_uniform"`` (for ReLU-family layers), or a
        callable ``(key, shape, dtype) -> array``. Biases start at zero.
      dtype: parameter dtype; ``None`` uses JAX's default float (float64 under x64).

    Backward (``dy: (batch, d_out)``): ``dw = x^T dy``, ``db = sum_batch dy``, ``dx = dy w^T``.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxbp as bp
      >>> layer = bp.dense(3)
      >>> params, shape = layer.init(jax.random.key(0), (2,))
      >>> y, cache = layer.forward(params, jnp.ones((4, 2)))
      >>> y.shape, shape
      ((4, 3), (3,))
    """
    d_out = positive_int("dense", "d_out", d_out, "dense(16)")
    name = f"dense({d_out})"
    w_initializer = get_initializer(name, w_init)

    def init(key, input_shape):
        shape = check_input_shape(name, input_shape)
        d_in = shape[-1]
        w = w_initializer(key, (d_in, d_out), dtype)
        b = jnp.zeros((d_out,), w.dtype)
        return DenseParams(w, b), (*shape[:-1], d_out)

    expected = {"w": ("d_in", d_out), "b": (d_out,)}

    def forward(params, x, *, key=None):
        check_param_shapes(name, params, expected)  # static shapes: trace time only
        w, b = params
        check_float_input(name, x)
        x_shape = getattr(x, "shape", None)
        if x_shape is None or len(x_shape) < 2 or x_shape[-1] != w.shape[0]:
            check_input(name, x, (w.shape[0],),
                        f"feature size {w.shape[0]} to match w.shape={tuple(w.shape)}")
        y = x @ w + bias_shape(b, x.ndim)
        return y, x

    def backward(params, x, dy):
        w, _ = params
        check_dy(name, dy, (*x.shape[:-1], d_out))
        x2 = x.reshape(-1, x.shape[-1])          # fold extra leading axes into the batch
        dy2 = dy.reshape(-1, dy.shape[-1])
        dw = weight_grad(x2, dy2)
        db = jnp.sum(dy2, axis=0)
        dx = dy @ w.T
        return DenseParams(dw, db), dx

    return Layer(init, forward, backward, name)
