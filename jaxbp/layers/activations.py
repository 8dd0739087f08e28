"""Activation layers ``a = f(z)`` with their hand-derived backward ``dz = da * f'(z)``.

Elementwise activations have no parameters (``()``); their Jacobian is diagonal, so the
vector-Jacobian product is the elementwise product with ``f'(z)`` — the seed document's
``dE/dz = dE/da · f'(z)``. Each layer caches the cheapest quantity its derivative needs
(``sigmoid`` and ``tanh`` cache their output, ``relu`` its input).

``softmax`` is not elementwise: ``dz = y * (dy - sum(dy * y))`` along the last axis.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxbp._core import Array, Layer, check_dy, check_float_input
from jaxbp.layers._shared import check_array, same_shape_init


def _elementwise(name: str, f: Callable[[Array], tuple[Array, Any]],
                 df: Callable[[Any], Array | float]) -> Layer:
    """Builds a parameter-free elementwise layer.

    ``f(x) -> (y, cache)`` and ``df(cache) -> f'(x)``; backward is ``dx = dy * f'(x)``. The
    cache is an array shaped like ``y`` (``x`` or ``y``), or a tuple whose first entry is one:
    backward checks ``dy`` against its shape.
    """

    def forward(params, x, *, key=None):
        check_array(name, x)
        return f(x)

    def backward(params, cache, dy):
        shaped = cache[0] if isinstance(cache, tuple) else cache  # x or y: y's shape, as dy's
        check_dy(name, dy, shaped.shape)
        return (), dy * df(cache)

    return Layer(same_shape_init(name), forward, backward, name)


def identity() -> Layer:
    """``y = x``; ``dx = dy``."""
    return _elementwise("identity", lambda x: (x, x), lambda _: 1.0)  # x: dy's shape for backward


def sigmoid() -> Layer:
    """``y = 1 / (1 + exp(-x))``; ``dx = dy * y * (1 - y)`` (caches ``y``)."""
    def f(x):
        y = jax.nn.sigmoid(x)  # evaluated stably for large |x|
        return y, y
    return _elementwise("sigmoid", f, lambda y: y * (1.0 - y))


def tanh() -> Layer:
    """``y = tanh(x)``; ``dx = dy * (1 - y^2)`` (caches ``y``)."""
    def f(x):
        y = jnp.tanh(x)
        return y, y
    return _elementwise("tanh", f, lambda y: 1.0 - y * y)


def relu() -> Layer:
    """``y = max(x, 0)``; ``dx = dy * [x > 0]``. The subgradient at ``x = 0`` is taken as 0."""
    def f(x):
        return jnp.where(x > 0, x, jnp.zeros_like(x)), x
    return _elementwise("relu", f, lambda x: (x > 0).astype(x.dtype))


def leaky_relu(negative_slope: float = 0.01) -> Layer:
    """``y = x if x >= 0 else s x``; ``dx = dy * (1 if x >= 0 else s)`` (1 at ``x = 0``)."""
    s = float(negative_slope)

    def f(x):
        return jnp.where(x >= 0, x, s * x), x
    return _elementwise(f"leaky_relu({s:g})", f,
                        lambda x: jnp.where(x >= 0, 1.0, s).astype(x.dtype))


def elu(alpha: float = 1.0) -> Layer:
    """``y = x if x > 0 else alpha (exp(x) - 1)``; ``dx = dy * (1 if x > 0 else y + alpha)``."""
    a = float(alpha)

    def f(x):
        # expm1 of min(x, 0): exp never sees a large positive x, so no inf hides in the
        # untaken branch of the where (whose derivative would otherwise be NaN).
        neg = a * jnp.expm1(jnp.minimum(x, 0.0))
        return jnp.where(x > 0, x, neg), (x, neg)
    return _elementwise(f"elu({a:g})", f,
                        lambda c: jnp.where(c[0] > 0, 1.0, c[1] + a).astype(c[0].dtype))


def softplus() -> Layer:
    """``y = log(1 + exp(x))``, computed as ``max(x, 0) + log1p(exp(-|x|))``;
    ``dx = dy * sigmoid(x)``."""
    def f(x):
        return jnp.maximum(x, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(x))), x
    return _elementwise("softplus", f, jax.nn.sigmoid)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715


def gelu(approximate: bool = True) -> Layer:
    """Gaussian error linear unit.

    ``approximate=True`` (default, as ``jax.nn.gelu``): the tanh form
    ``y = x/2 (1 + tanh(u))``, ``u = sqrt(2/pi) (x + 0.044715 x^3)``, with
    ``f'(x) = (1 + tanh u)/2 + x/2 (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2)``.

    ``approximate=False``: the exact form ``y = x Phi(x)`` (``Phi`` the standard normal CDF),
    ``f'(x) = Phi(x) + x phi(x)``.
    """
    if approximate:
        def f(x):
            t = jnp.tanh(_SQRT_2_OVER_PI * (x + _GELU_C * x ** 3))
            return 0.5 * x * (1.0 + t), (x, t)

        def df(c):
            x, t = c
            du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_C * x * x)
            return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du
        return _elementwise("gelu(tanh)", f, df)

    def f_exact(x):
        cdf = 0.5 * (1.0 + jax.scipy.special.erf(x / math.sqrt(2.0)))
        return x * cdf, (x, cdf)

    def df_exact(c):
        x, cdf = c
        pdf = jnp.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        return cdf + x * pdf
    return _elementwise("gelu(erf)", f_exact, df_exact)


def softmax() -> Layer:
    """``y_i = exp(x_i) / sum_j exp(x_j)`` over the last axis.

    Backward: the Jacobian is ``diag(y) - y y^T``, so ``dx = y * (dy - sum(dy * y))``, the sum
    taken over the last axis. For classification prefer logits with
    ``softmax_cross_entropy``, whose fused gradient ``p - y`` avoids this product entirely.
    """
    name = "softmax"

    def forward(params, x, *, key=None):
        check_array(name, x)
        check_float_input(name, x)
        z = x - jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))  # exp cannot overflow
        e = jnp.exp(z)
        y = e / jnp.sum(e, axis=-1, keepdims=True)
        return y, y

    def backward(params, y, dy):
        check_dy(name, dy, y.shape)
        return (), y * (dy - jnp.sum(dy * y, axis=-1, keepdims=True))

    return Layer(same_shape_init(name), forward, backward, name)


#: Activation name -> its layer factory: the choices of ``models.mlp(activation=)`` and
#: ``jaxbp train --activation``.
ACTIVATIONS: dict[str, Callable[[], Layer]] = {
    "identity": identity,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "elu": elu,
    "softplus": softplus,
    "gelu": gelu,
}
