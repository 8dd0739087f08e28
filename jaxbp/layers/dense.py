"""Fully connected layer ``y = x @ w + b`` and weight initialisers.

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

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxbp._core import Array, Layer, check_input, check_input_shape, float_dtype

Initializer = Callable[[jax.Array, tuple[int, ...], jnp.dtype], Array]


class DenseParams(NamedTuple):
    """Parameters of :func:`dense`: ``w: (d_in, d_out)``, ``b: (d_out,)``."""

    w: Array
    b: Array


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    # (d_in, d_out) for dense; (kh, kw, c_in, c_out) for HWIO convolutions.
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def glorot_uniform(key, shape, dtype=None) -> Array:
    """Glorot/Xavier uniform: ``U(-a, a)``, ``a = sqrt(6 / (fan_in + fan_out))``; for tanh/sigmoid."""
    fan_in, fan_out = _fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, float_dtype(dtype), -limit, limit)


def glorot_normal(key, shape, dtype=None) -> Array:
    """Glorot/Xavier normal: ``N(0, 2 / (fan_in + fan_out))``."""
    fan_in, fan_out = _fans(shape)
    std = math.sqrt(2.0 / (fan_in + fan_out))
    return std * jax.random.normal(key, shape, float_dtype(dtype))


def he_normal(key, shape, dtype=None) -> Array:
    """He/Kaiming normal: ``N(0, 2 / fan_in)``; keeps activations' scale through ReLUs."""
    fan_in, _ = _fans(shape)
    return math.sqrt(2.0 / fan_in) * jax.random.normal(key, shape, float_dtype(dtype))


def he_uniform(key, shape, dtype=None) -> Array:
    """He/Kaiming uniform: ``U(-a, a)``, ``a = sqrt(6 / fan_in)``."""
    fan_in, _ = _fans(shape)
    limit = math.sqrt(6.0 / fan_in)
    return jax.random.uniform(key, shape, float_dtype(dtype), -limit, limit)


INITIALIZERS: dict[str, Initializer] = {
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "xavier_uniform": glorot_uniform,
    "xavier_normal": glorot_normal,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
}


def get_initializer(name: str, init: str | Initializer) -> Initializer:
    """Resolves an initialiser given by name (see ``INITIALIZERS``) or as a callable."""
    if callable(init):
        return init
    if init not in INITIALIZERS:
        raise ValueError(
            f"{name}: w_init={init!r} is not a known initialiser; expected one of "
            f"{sorted(INITIALIZERS)} or a callable (key, shape, dtype) -> array."
        )
    return INITIALIZERS[init]


def bias_shape(b: Array, ndim: int) -> Array:
    """Reshapes a ``(d,)`` bias to broadcast explicitly against a rank-``ndim`` array."""
    return b.reshape((1,) * (ndim - 1) + b.shape)


def _weight_grad_cpu(x: Array, dy: Array) -> Array:
    # Both operands of x^T dy are contracted over their rows (the batch axis). XLA:CPU hands
    # such a product to a generic Eigen kernel, while a product of row-major operands goes to
    # its faster matmul library. Measured in scanned training steps (benchmarks/analysis.md,
    # "The dense weight gradient on CPU"), the Eigen kernel is
    #   - 4-5x slower for a narrow dy (few outputs, e.g. a classifier's 10 logits), where
    #     dw = (dy^T x)^T transposes only dy and the small result;
    #   - 5-10% slower for a big batch (>= 256) not much narrower than d_in, and for small
    #     products (<= 2^20 multiply-adds), where transposing x in memory first pays;
    #   - as fast or faster otherwise (e.g. batch 128 with d_in 256-784), and for tiny x.
    # optimization_barrier keeps XLA from folding the transposes back into the product.
    barrier = jax.lax.optimization_barrier
    form = weight_grad_form(*x.shape, dy.shape[1])
    if form == "(dy^T x)^T":
        return barrier(barrier(dy.T) @ x).T
    if form == "(x^T) dy":
        return barrier(x.T) @ dy
    return x.T @ dy


def weight_grad_form(batch: int, d_in: int, d_out: int) -> str:
    """How :func:`weight_grad` lays out ``x^T dy`` on CPU for these sizes:
    ``"x^T dy"`` (as written), ``"(x^T) dy"`` or ``"(dy^T x)^T"`` (see ``_weight_grad_cpu``)."""
    if batch * d_in < 4096:
        return "x^T dy"
    if d_out <= 64 and 4 * d_out <= d_in:
        return "(dy^T x)^T"
    if 4 * batch >= d_in and (batch >= 256 or batch * d_in * d_out <= 2**20):
        return "(x^T) dy"
    return "x^T dy"


def weight_grad(x: Array, dy: Array) -> Array:
    """``dw = x^T @ dy`` for ``x: (batch, d_in)``, ``dy: (batch, d_out)``: the weight gradient
    of :func:`dense`, summed over the batch.

    The same product on every backend, to rounding; on CPU it is arranged by shape so that XLA
    picks its fast matmul kernel (see ``_weight_grad_cpu``).
    """
    return jax.lax.platform_dependent(x, dy, cpu=_weight_grad_cpu,
                                      default=lambda x, dy: x.T @ dy)


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
    if isinstance(d_out, bool) or not isinstance(d_out, int) or d_out <= 0:
        raise ValueError(f"dense: d_out={d_out!r} must be a positive int, e.g. dense(16).")
    name = f"dense({d_out})"
    w_initializer = get_initializer(name, w_init)

    def init(key, input_shape):
        shape = check_input_shape(name, input_shape)
        d_in = shape[-1]
        w = w_initializer(key, (d_in, d_out), dtype)
        b = jnp.zeros((d_out,), w.dtype)
        return DenseParams(w, b), shape[:-1] + (d_out,)

    def forward(params, x, *, key=None):
        w, b = params
        x_shape = getattr(x, "shape", None)
        if x_shape is None or len(x_shape) < 2 or x_shape[-1] != w.shape[0]:
            check_input(name, x, (w.shape[0],),
                        f"feature size {w.shape[0]} to match w.shape={tuple(w.shape)}")
        y = x @ w + bias_shape(b, x.ndim)
        return y, x

    def backward(params, x, dy):
        w, _ = params
        x2 = x.reshape(-1, x.shape[-1])          # fold extra leading axes into the batch
        dy2 = dy.reshape(-1, dy.shape[-1])
        dw = weight_grad(x2, dy2)
        db = jnp.sum(dy2, axis=0)
        dx = dy @ w.T
        return DenseParams(dw, db), dx

    return Layer(init, forward, backward, name)
