"""Layer normalisation over the last axis, with learned scale ``gamma`` and shift ``beta``.

Forward for ``x: (..., d)`` (every leading axis is a batch axis), ``gamma, beta: (d,)``::

    mu    = (1/d) sum_k x_k                          (..., 1)
    var   = (1/d) sum_k (x_k - mu)^2                 (..., 1)
    r     = 1 / sqrt(var + eps)                      (..., 1)
    xhat  = (x - mu) r                               (..., d)
    y     = gamma xhat + beta                        (..., d)

Backward, given ``dy: (..., d)``::

    dgamma = sum over leading axes of dy * xhat      (d,)
    dbeta  = sum over leading axes of dy             (d,)
    g      = dy * gamma                              (..., d)   dL/dxhat
    dx     = r (g - mean_k(g) - xhat mean_k(g xhat)) (..., d)

The last line folds the paths through ``mu`` and ``var`` into two means; it is derived in
``docs/derivations-conv-rnn.md``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxbp._core import (Array, Layer, check_dy, check_float_input, check_input_shape,
                         check_param_shapes, float_dtype)
from jaxbp._validate import positive_number
from jaxbp.layers._shared import bias_shape


class LayerNormParams(NamedTuple):
    """Parameters of :func:`layer_norm`: ``gamma: (d,)`` (starts at 1), ``beta: (d,)`` (at 0)."""

    gamma: Array
    beta: Array


class LayerNormCache(NamedTuple):
    """What backward needs: normalised input ``xhat: (..., d)`` and ``r = 1/sqrt(var + eps)``."""

    xhat: Array
    r: Array


def layer_norm(eps: float = 1e-5, *, dtype=None) -> Layer:
    """Normalises the last axis to zero mean and unit variance, then ``y = gamma xhat + beta``.

    Forward: ``xhat = (x - mean(x)) / sqrt(var(x) + eps)`` over the last axis (``var`` the
    biased, ``1/d``, variance); ``y = gamma * xhat + beta``, ``y: (..., d)``.

    Backward (``dy: (..., d)``): ``dgamma = sum dy * xhat``, ``dbeta = sum dy`` (``(d,)``, summed
    over every leading axis); with ``g = dy * gamma``,
    ``dx = (g - mean(g) - xhat * mean(g * xhat)) / sqrt(var + eps)`` ``(..., d)``.

    Args:
      eps: added to the variance so a constant row does not divide by zero.
      dtype: parameter dtype; ``None`` uses JAX's default float.
    """
    eps = positive_number("layer_norm", "eps", eps, "layer_norm(eps=1e-5)")
    name = "layer_norm"

    def init(key, input_shape):
        shape = check_input_shape(name, input_shape)
        d = shape[-1]
        dt = float_dtype(dtype)
        return LayerNormParams(jnp.ones((d,), dt), jnp.zeros((d,), dt)), shape

    expected = {"gamma": ("d",), "beta": ("d",)}

    def forward(params, x, *, key=None):
        check_param_shapes(name, params, expected)  # static shapes: trace time only
        gamma, beta = params
        check_float_input(name, x)
        shape = getattr(x, "shape", None)
        if shape is None or len(shape) < 2 or shape[-1] != gamma.shape[0]:
            raise ValueError(
                f"{name}: input x has shape {shape}, but (batch, ..., {gamma.shape[0]}) is "
                f"expected: the last axis must match gamma.shape={tuple(gamma.shape)}. Fix: "
                f"initialise the layer with the input's shape without the batch axis.")
        mu = jnp.mean(x, axis=-1, keepdims=True)
        xc = x - mu
        var = jnp.mean(xc * xc, axis=-1, keepdims=True)
        r = 1.0 / jnp.sqrt(var + eps)
        xhat = xc * r
        y = bias_shape(gamma, x.ndim) * xhat + bias_shape(beta, x.ndim)
        return y, LayerNormCache(xhat, r)

    def backward(params, cache, dy):
        gamma, _ = params
        xhat, r = cache
        check_dy(name, dy, xhat.shape)
        lead = tuple(range(dy.ndim - 1))
        dgamma = jnp.sum(dy * xhat, axis=lead)
        dbeta = jnp.sum(dy, axis=lead)
        g = dy * bias_shape(gamma, dy.ndim)
        dx = r * (g - jnp.mean(g, axis=-1, keepdims=True)
                  - xhat * jnp.mean(g * xhat, axis=-1, keepdims=True))
        return LayerNormParams(dgamma, dbeta), dx

    # jit: an eager call compiles once per shape instead of once per primitive (inlined under
    # an outer jit). Argument checks depend only on static shapes, so they still run.
    return Layer(init, jax.jit(forward), jax.jit(backward), name)
