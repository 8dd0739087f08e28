"""Pooling over NHWC windows (``max_pool``, ``avg_pool``) and ``flatten``; all parameter-free.

With window ``(kh, kw)``, stride ``(sh, sw)`` and padding as in :func:`jaxbp.conv2d`, each output
``y[n, p, q, c]`` reads the window ``W(p, q) = {(p sh + i, q sw + j) : i < kh, j < kw}`` of the
padded input.

``max_pool``: ``y = max over W(p, q)``; backward sends ``dy[n, p, q, c]`` to one argmax of the
window. **Tie rule**: the *first* maximum in row-major window order (smallest ``i``, then
smallest ``j``), chosen independently by every window (overlapping windows may pick the same
element; their gradients add). This is the rule ``jax.vjp`` of ``lax.reduce_window`` applies
(XLA's select-and-scatter with ``>=``), so the two agree even on ties; ``tests/test_conv.py``
checks ties against a hand-written expectation as well. Padding counts as ``-inf`` and is never
the maximum (``max_pool`` requires every window to hold a real element).

``avg_pool``: ``y = (1 / |W(p, q) ∩ input|) sum over W(p, q)``: padding is *excluded* from the
count (so "SAME" averages at the border are over real elements only). Backward:
``dx = transposed window sum of dy / count`` — one depthwise ``lax.conv_general_dilated``.

``flatten``: ``(batch, *shape) -> (batch, prod(shape))``; backward reshapes back.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxbp._core import Layer, check_dy, check_float_input, check_input, check_input_shape
from jaxbp.layers._shared import shape_token, token_shape
from jaxbp.layers._windows import (Padding, check_images, check_padding, conv_transpose_input,
                                   image_shape, output_hw, pair, resolve_padding)


def _pool_factory(kind: str, window, stride, padding):
    name = f"{kind}({window})"
    window = pair(name, "window", window)
    strides = window if stride is None else pair(name, "stride", stride)
    padding = check_padding(name, padding)

    def geometry(hw):
        pads = resolve_padding(padding, hw, window, strides)
        out = output_hw(name, hw, window, strides, pads)
        if kind == "max_pool" and any(lo >= k or hi >= k for (lo, hi), k in zip(pads, window)):
            raise ValueError(
                f"{name}: padding {pads} is as wide as the window {window}, so some windows "
                f"would hold only padding and have no maximum. Fix: pad by less than the window.")
        return pads, out

    def init(key, input_shape):
        shape = image_shape(name, input_shape, "channels",
                            "pool images, e.g. after conv2d; input_shape like (8, 8, 16)")
        _, (ho, wo) = geometry(shape[:2])
        return (), (ho, wo, shape[2])

    return name, window, strides, geometry, init


def _window_config(window, strides, pads):
    return (1, *window, 1), (1, *strides, 1), ((0, 0), *pads, (0, 0))


def max_pool(window=2, stride=None, padding: Padding = "VALID") -> Layer:
    """Max pooling ``y[n,p,q,c] = max_{i<kh, j<kw} xp[n, p sh + i, q sw + j, c]`` (no params).

    Backward (``dy: (batch, Ho, Wo, c)``): ``dx[n,u,v,c] = sum_{p,q} dy[n,p,q,c] [ (u, v) is the
    first argmax of window (p, q) ]``, shape ``(batch, H, W, c)``. Computed with a static loop
    over the ``kh kw`` window *offsets*; each step is one strided slice (and its adjoint, a
    strided pad) over all positions at once.

    Args:
      window: ``k`` or ``(kh, kw)``.
      stride: ``s`` or ``(sh, sw)``; defaults to the window (non-overlapping).
      padding: ``"VALID"`` (default), ``"SAME"`` or ``((top, bottom), (left, right))``; padding
        acts as ``-inf``.
    """
    name, window, strides, geometry, init = _pool_factory("max_pool", window, stride, padding)
    kh, kw = window

    def forward(params, x, *, key=None):
        shape = check_images(name, x, None)
        check_float_input(name, x)  # -inf padding and averages need floats
        pads, _ = geometry(shape[1:3])
        dims, strd, full_pads = _window_config(window, strides, pads)
        y = lax.reduce_window(x, -jnp.inf, lax.max, dims, strd, full_pads)
        return y, x

    def backward(params, x, dy):
        n, h, w, c = x.shape
        pads, (ho, wo) = geometry((h, w))
        check_dy(name, dy, (n, ho, wo, c))
        xp = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-jnp.inf)
        hp, wp = xp.shape[1:3]
        sh, sw = strides

        def window_slice(i, j):
            return lax.slice(xp, (0, i, j, 0), (n, i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1, c),
                             (1, sh, sw, 1))

        offsets = [(i, j) for i in range(kh) for j in range(kw)]   # row-major window order
        candidates = jnp.stack([window_slice(i, j) for i, j in offsets])  # (kh kw, n, ho, wo, c)
        first = jnp.argmax(candidates, axis=0)  # argmax returns the first maximum: the tie rule
        dxp = jnp.zeros_like(xp)
        for k, (i, j) in enumerate(offsets):
            dk = jnp.where(first == k, dy, jnp.zeros_like(dy))
            # Adjoint of the strided slice: interior padding puts dk back at its stride positions.
            dxp = dxp + lax.pad(dk, jnp.zeros((), dy.dtype), (
                (0, 0, 0),
                (i, hp - i - (ho - 1) * sh - 1, sh - 1),
                (j, wp - j - (wo - 1) * sw - 1, sw - 1),
                (0, 0, 0)))
        (pt, _), (pl, _) = pads
        return (), dxp[:, pt:pt + h, pl:pl + w, :]

    # jit: an eager call compiles once per shape instead of once per primitive (inlined under
    # an outer jit). Argument checks depend only on static shapes, so they still run.
    return Layer(init, jax.jit(forward), jax.jit(backward), name)


def _counts(hw, window, strides, pads, dtype):
    """Real (non-padding) elements in every window, ``(1, Ho, Wo, 1)``; static, from NumPy."""
    per_axis = []
    for size, k, s, (lo, hi) in zip(hw, window, strides, pads):
        out = (size + lo + hi - k) // s + 1
        start = np.arange(out) * s - lo
        per_axis.append(np.minimum(start + k, size) - np.maximum(start, 0))
    return jnp.asarray(np.outer(*per_axis)[None, :, :, None], dtype)


def avg_pool(window=2, stride=None, padding: Padding = "VALID") -> Layer:
    """Average pooling over the real elements of each window (no params).

    Forward: ``y[n,p,q,c] = (1 / m[p,q]) sum_{i<kh, j<kw} xp[n, p sh + i, q sw + j, c]`` with
    ``m[p,q]`` the number of non-padding elements in window ``(p, q)``.

    Backward (``dy: (batch, Ho, Wo, c)``): ``dx[n,u,v,c] = sum_{(p,q): (u,v) in W(p,q)}
    dy[n,p,q,c] / m[p,q]``, shape ``(batch, H, W, c)`` — the transposed depthwise convolution
    of ``dy / m`` with a ``kh x kw`` kernel of ones.

    Args:
      window: ``k`` or ``(kh, kw)``.
      stride: ``s`` or ``(sh, sw)``; defaults to the window (non-overlapping).
      padding: ``"VALID"`` (default), ``"SAME"`` or ``((top, bottom), (left, right))``.
    """
    name, window, strides, geometry, init = _pool_factory("avg_pool", window, stride, padding)

    def forward(params, x, *, key=None):
        shape = check_images(name, x, None)
        check_float_input(name, x)  # -inf padding and averages need floats
        pads, _ = geometry(shape[1:3])
        dims, strd, full_pads = _window_config(window, strides, pads)
        # A Python 0.0 as the init value: JAX differentiates reduce_window only for known monoids.
        total = lax.reduce_window(x, 0.0, lax.add, dims, strd, full_pads)
        y = total / _counts(shape[1:3], window, strides, pads, x.dtype)
        return y, shape_token(x)  # backward needs x's shape, not its values

    def backward(params, token, dy):
        n, h, w, c = token_shape(token)
        pads, (ho, wo) = geometry((h, w))
        check_dy(name, dy, (n, ho, wo, c))
        g = dy / _counts((h, w), window, strides, pads, dy.dtype)
        ones = jnp.ones((*window, 1, c), dy.dtype)   # depthwise: one window sum per channel
        return (), conv_transpose_input(g, ones, (h, w), strides, pads, groups=c)

    # jit: an eager call compiles once per shape instead of once per primitive (inlined under
    # an outer jit). Argument checks depend only on static shapes, so they still run.
    return Layer(init, jax.jit(forward), jax.jit(backward), name)


def flatten() -> Layer:
    """``y = x.reshape(batch, -1)``; backward ``dx = dy.reshape(x.shape)`` (no params)."""
    name = "flatten"

    def init(key, input_shape):
        shape = check_input_shape(name, input_shape)
        return (), (math.prod(shape),)

    def forward(params, x, *, key=None):
        shape = getattr(x, "shape", None)
        if shape is None or len(shape) < 1:
            check_input(name, x, ("...",))
        # the size, not -1: an empty batch has no size to divide by
        return x.reshape(x.shape[0], math.prod(x.shape[1:])), shape_token(x)

    def backward(params, token, dy):
        shape = token_shape(token)
        check_dy(name, dy, (shape[0], math.prod(shape[1:])))
        return (), dy.reshape(shape)

    return Layer(init, forward, backward, name)
