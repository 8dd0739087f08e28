"""Normalisation layers: layer norm (over the features of each example) and batch norm (over
the examples of a batch, per feature), each with learned scale ``gamma`` and shift ``beta``.

Layer normalisation, over the last axis.

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

Batch normalisation, over every axis but the last (the ``N`` rows of a dense ``(N, c)`` input,
or the ``N = batch·H·W`` positions of an NHWC image), per feature ``c``; the same algebra with
the roles of the axes swapped. Training mode (``key`` given) uses the batch's statistics::

    mu    = (1/N) sum_rows x                  (c,)
    var   = (1/N) sum_rows (x - mu)^2         (c,)    the biased variance
    r     = 1 / sqrt(var + eps)               (c,)
    xhat  = (x - mu) r,   y = gamma xhat + beta

    dgamma = sum_rows dy * xhat,   dbeta = sum_rows dy,   g = dy * gamma
    dx     = r (g - mean_rows(g) - xhat mean_rows(g xhat))

and its state, the running statistics (``BatchNormState(mean, var)``, starting at 0 and 1),
moves towards the batch's: ``running = momentum running + (1 - momentum) batch``. Evaluation
mode (``key=None``) normalises with the running statistics instead, an affine map per
feature: ``xhat = (x - mean) / sqrt(var + eps)`` and ``dx = dy * gamma / sqrt(var + eps)``.
Derived in ``docs/derivations-conv-rnn.md``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxbp._core import (Array, Layer, StateRule, check_dy, check_float_input,
                         check_input_shape, check_param_shapes, float_dtype)
from jaxbp._validate import number_in, positive_number
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


class BatchNormParams(NamedTuple):
    """Parameters of :func:`batch_norm`: ``gamma: (c,)`` (starts at 1), ``beta: (c,)`` (at 0)."""

    gamma: Array
    beta: Array


class BatchNormState(NamedTuple):
    """The state of :func:`batch_norm`, not trained: running ``mean: (c,)`` (starts at 0) and
    running biased ``var: (c,)`` (starts at 1), used in evaluation mode."""

    mean: Array
    var: Array


class BatchNormCache(NamedTuple):
    """Training mode: ``xhat`` (x's shape), ``r = 1/sqrt(var + eps)`` and the batch's ``mean``
    and biased ``var`` (``(c,)`` each; the running statistics' update reads them)."""

    xhat: Array
    r: Array
    mean: Array
    var: Array


class BatchNormEvalCache(NamedTuple):
    """Evaluation mode: ``xhat`` (x's shape) and ``r = 1/sqrt(running var + eps)`` ``(c,)``."""

    xhat: Array
    r: Array


def batch_norm(momentum: float = 0.9, eps: float = 1e-5, *, dtype=None) -> Layer:
    """Normalises each feature (the last axis) over the batch, then ``y = gamma xhat + beta``.

    Works on ``(batch, c)`` (after a dense layer) and NHWC ``(batch, h, w, c)`` (after a
    convolution): the statistics run over every axis but the last. A layer with state: its
    :class:`~jaxbp.StateRule` starts the running statistics at mean 0, variance 1
    (:class:`BatchNormState`) and moves them after every training forward by
    ``running = momentum · running + (1 − momentum) · batch`` (the biased batch variance, as
    flax does); :func:`jaxbp.init_layer_state` gives a network's initial state.

    Forward, training (``key`` given, e.g. in ``fit``): ``xhat = (x − mu) / sqrt(var + eps)``
    with the batch's ``mu``, biased ``var`` ``(c,)``; no ``state`` needed. Evaluation
    (``key=None``): the same with the running ``state.mean``, ``state.var``; ``state=`` is
    required. Backward (``dy`` of ``x``'s shape): ``dgamma = Σ dy·xhat``, ``dbeta = Σ dy`` over
    every axis but the last; with ``g = dy·gamma``, training
    ``dx = (g − mean(g) − xhat·mean(g·xhat)) / sqrt(var + eps)`` (the means over those axes:
    the paths through ``mu`` and ``var``), evaluation ``dx = g / sqrt(var + eps)``.

    Args:
      momentum: how much of the running statistics each training step keeps, in ``[0, 1)``.
      eps: added to the variance so a constant feature does not divide by zero.
      dtype: parameter and state dtype; ``None`` uses JAX's default float.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxbp as bp
      >>> bn = bp.batch_norm()
      >>> params, _ = bn.init(jax.random.key(0), (2,))
      >>> x = jnp.array([[1.0, 10.0], [3.0, 30.0]])
      >>> y, cache = bn.forward(params, x, key=jax.random.key(1))   # training: batch statistics
      >>> y.round(3).tolist()
      [[-1.0, -1.0], [1.0, 1.0]]
      >>> state = bn.state.update(bn.state.init(params), cache)     # 0.9·(0, 1) + 0.1·batch
      >>> state.mean.tolist(), state.var.round(2).tolist()
      ([0.2, 2.0], [1.0, 10.9])
      >>> bn.forward(params, x, state=state)[0].round(2).tolist()  # evaluation: running ones
      [[0.8, 2.42], [2.8, 8.48]]
    """
    momentum = number_in("batch_norm", "momentum", momentum, low=0.0, high=1.0,
                         high_open=True, example="batch_norm(momentum=0.9)")
    eps = positive_number("batch_norm", "eps", eps, "batch_norm(eps=1e-5)")
    name = "batch_norm"
    expected = {"gamma": ("c",), "beta": ("c",)}

    def init(key, input_shape):
        shape = check_input_shape(name, input_shape)
        c = shape[-1]
        dt = float_dtype(dtype)
        return BatchNormParams(jnp.ones((c,), dt), jnp.zeros((c,), dt)), shape

    def check_x(x, c):
        check_float_input(name, x)
        shape = getattr(x, "shape", None)
        if shape is None or len(shape) < 2 or shape[-1] != c:
            raise ValueError(
                f"{name}: input x has shape {shape}, but (batch, ..., {c}) is expected: the "
                f"last axis holds the features, matching gamma.shape=({c},). Fix: initialise "
                f"the layer with the input's shape without the batch axis.")

    def check_state(state, c, training):
        if state is None:
            if training:
                return  # the batch's statistics; no running statistics to move
            raise ValueError(
                f"{name}: evaluation mode (key=None) normalises with the running statistics, "
                f"but no state was passed. Fix: forward(params, x, state=...) with "
                f"bp.init_layer_state(net, params) or the layer_state fit returned; or pass "
                f"key= to train on the batch's statistics.")
        shapes = [tuple(getattr(leaf, "shape", ())) for leaf in
                  (state if isinstance(state, tuple) and len(state) == 2 else ())]
        if shapes != [(c,), (c,)]:
            raise ValueError(
                f"{name}: state must be BatchNormState(mean: ({c},), var: ({c},)), got "
                f"{type(state).__name__} with shapes {shapes}. Fix: pass the state of this "
                f"network (bp.init_layer_state(net, params)), not another's.")

    def forward(params, x, *, key=None, state=None):
        check_param_shapes(name, params, expected)
        gamma, beta = params
        c = gamma.shape[0]
        check_x(x, c)
        check_state(state, c, training=key is not None)
        rows = tuple(range(x.ndim - 1))

        def per_feature(v):  # (c,) -> (1, ..., 1, c), broadcast over the rows
            return bias_shape(v, x.ndim)

        y_of = lambda xhat: per_feature(gamma) * xhat + per_feature(beta)  # noqa: E731
        if key is None:  # evaluation: the running statistics, an affine map per feature
            r = 1.0 / jnp.sqrt(state.var + eps)
            xhat = (x - per_feature(state.mean)) * per_feature(r)
            return y_of(xhat), BatchNormEvalCache(xhat, r)
        mu = jnp.mean(x, axis=rows)
        xc = x - per_feature(mu)
        var = jnp.mean(xc * xc, axis=rows)
        r = 1.0 / jnp.sqrt(var + eps)
        xhat = xc * per_feature(r)
        return y_of(xhat), BatchNormCache(xhat, r, mu, var)

    def backward(params, cache, dy):
        gamma, _ = params
        check_dy(name, dy, cache.xhat.shape)
        rows = tuple(range(dy.ndim - 1))
        xhat, r = cache.xhat, bias_shape(cache.r, dy.ndim)
        dgamma = jnp.sum(dy * xhat, axis=rows)
        dbeta = jnp.sum(dy, axis=rows)
        g = dy * bias_shape(gamma, dy.ndim)
        if isinstance(cache, BatchNormEvalCache):
            return BatchNormParams(dgamma, dbeta), g * r
        dx = r * (g - jnp.mean(g, axis=rows, keepdims=True)
                  - xhat * jnp.mean(g * xhat, axis=rows, keepdims=True))
        return BatchNormParams(dgamma, dbeta), dx

    def init_state(params):
        gamma = params[0]
        return BatchNormState(jnp.zeros_like(gamma), jnp.ones_like(gamma))

    def update(state, cache):
        if isinstance(cache, BatchNormEvalCache):
            return state  # evaluation never moves the running statistics
        def move(running, batch):
            return (momentum * running + (1.0 - momentum) * batch).astype(running.dtype)
        return BatchNormState(move(state.mean, cache.mean), move(state.var, cache.var))

    return Layer(init, jax.jit(forward), jax.jit(backward), name,
                 state=StateRule(init_state, update))
