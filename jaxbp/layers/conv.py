"""2-D convolution (NHWC inputs, HWIO kernels) with its backward written as XLA convolutions.

Forward (``x: (batch, H, W, c_in)``, ``w: (kh, kw, c_in, c_out)``, ``b: (c_out,)``, stride
``(sh, sw)``, ``xp`` the input zero-padded by ``((pt, pb), (pl, pr))``)::

    y[n, p, q, o] = sum_{i, j, c} xp[n, p sh + i, q sw + j, c] w[i, j, c, o] + b[o]
                                                               (batch, Ho, Wo, c_out)
    Ho = (H + pt + pb - kh) // sh + 1,   Wo likewise

Backward, given ``dy: (batch, Ho, Wo, c_out)``::

    db[o]          = sum_{n, p, q} dy[n, p, q, o]                              (c_out,)
    dw[i, j, c, o] = sum_{n, p, q} xp[n, p sh + i, q sw + j, c] dy[n, p, q, o]
                     a correlation of xp with dy dilated by the stride         (kh, kw, c_in, c_out)
    dxp[n, u, v, c] = sum_{p, q, o} dy[n, p, q, o] w[u - p sh, v - q sw, c, o]
                     a correlation of dy dilated by the stride (zeros between its rows and
                     columns) with the kernel flipped in space and c_in/c_out swapped, i.e.
                     the transposed convolution; dx is dxp without its padding rows/columns.
                                                                               (batch, H, W, c_in)

Both are single ``lax.conv_general_dilated`` calls, so the backward costs about what the forward
does; no Python loop runs over positions. ``docs/derivations-conv-rnn.md`` derives them.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxbp._core import Array, Layer, check_dy, check_float_input, check_param_shapes
from jaxbp._validate import positive_int
from jaxbp.layers._shared import bias_shape
from jaxbp.layers._windows import (NHWC, Padding, Pads, check_images, check_padding,
                                   conv_transpose_input, image_shape, output_hw, pair,
                                   resolve_padding, unused_tail)
from jaxbp.layers.initializers import Initializer, jitted_initializer


class Conv2DParams(NamedTuple):
    """Parameters of :func:`conv2d`: ``w: (kh, kw, c_in, c_out)`` (HWIO), ``b: (c_out,)``."""

    w: Array
    b: Array


def conv_kernel_grad(x: Array, dy: Array, window, strides, pads: Pads) -> Array:
    """``dw: (kh, kw, c_in, c_out)``: correlate the padded input with ``dy`` dilated by the stride.

    The batch axis is contracted, so it plays the role of the feature axis: ``x`` is read as
    ``c_in`` examples of ``batch`` features, ``(c_in, H, W, batch)``, and ``dy`` as a
    ``(Ho, Wo)`` kernel from ``batch`` to ``c_out`` features, ``(Ho, Wo, batch, c_out)``; the
    result ``(c_in, kh, kw, c_out)`` is transposed to HWIO. The high padding drops the unused
    tail so the output is ``kh x kw``. (Explicit transposes to plain NHWC/HWIO rather than
    permuted dimension numbers: see the note in :func:`conv_transpose_input`.)
    """
    tails = unused_tail(x.shape[1:3], window, strides, pads)
    grad_pads = [(lo, hi - tail) for (lo, hi), tail in zip(pads, tails)]
    dw = lax.conv_general_dilated(jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(dy, (1, 2, 0, 3)),
                                  (1, 1), grad_pads, rhs_dilation=strides,
                                  dimension_numbers=NHWC)
    return jnp.transpose(dw, (1, 2, 0, 3))


def conv2d(c_out: int, kernel_size, stride=1, padding: Padding = "SAME", *,
           w_init: str | Initializer = "he_normal", dtype=None) -> Layer:
    """2-D convolution, NHWC inputs, ``Conv2DParams(w: (kh, kw, c_in, c_out), b: (c_out,))``.

    Forward: ``y[n,p,q,o] = sum_{i,j,c} xp[n, p sh + i, q sw + j, c] w[i,j,c,o] + b[o]``
    with ``xp`` the zero-padded input; ``y: (batch, Ho, Wo, c_out)``.

    Backward (``dy: (batch, Ho, Wo, c_out)``):
      ``db = sum_{n,p,q} dy`` ``(c_out,)``;
      ``dw[i,j,c,o] = sum_{n,p,q} xp[n, p sh + i, q sw + j, c] dy[n,p,q,o]``
      ``(kh, kw, c_in, c_out)``;
      ``dx`` = ``dy`` dilated by the stride, correlated with ``w`` flipped in space with
      ``c_in``/``c_out`` swapped, cropped to the input ``(batch, H, W, c_in)``.
    Each is one ``lax.conv_general_dilated``.

    Args:
      c_out: number of output channels.
      kernel_size: ``k`` or ``(kh, kw)``.
      stride: ``s`` or ``(sh, sw)``.
      padding: ``"SAME"`` (``ceil(H / sh)`` outputs; odd total padding puts the extra row at
        the bottom/right), ``"VALID"`` (no padding) or explicit ``((top, bottom), (left, right))``.
      w_init: kernel initialiser (default ``"he_normal"``, fan-in ``kh kw c_in``); biases start
        at 0.
      dtype: parameter dtype; ``None`` uses JAX's default float.

    Examples:
      >>> import jax, jaxbp as bp
      >>> layer = bp.conv2d(8, 3, stride=2)
      >>> params, shape = layer.init(jax.random.key(0), (7, 7, 1))
      >>> params.w.shape, shape
      ((3, 3, 1, 8), (4, 4, 8))
    """
    c_out = positive_int("conv2d", "c_out", c_out, "conv2d(16, 3)")
    name = f"conv2d({c_out}, {kernel_size})"
    window = pair(name, "kernel_size", kernel_size)
    strides = pair(name, "stride", stride)
    padding = check_padding(name, padding)
    w_initializer = jitted_initializer(name, w_init)

    def init(key, input_shape):
        shape = image_shape(name, input_shape, "c_in",
                            "reshape images to (H, W, channels), e.g. (8, 8, 1)")
        pads = resolve_padding(padding, shape[:2], window, strides)
        ho, wo = output_hw(name, shape[:2], window, strides, pads)
        w = w_initializer(key, (*window, shape[2], c_out), dtype)
        return Conv2DParams(w, jnp.zeros((c_out,), w.dtype)), (ho, wo, c_out)

    expected = {"w": (*window, "c_in", c_out), "b": (c_out,)}

    def forward(params, x, *, key=None):
        check_param_shapes(name, params, expected)  # static shapes: trace time only
        w, b = params
        check_float_input(name, x)
        x_shape = check_images(name, x, w.shape[2], f"w.shape={tuple(w.shape)}")
        pads = resolve_padding(padding, x_shape[1:3], window, strides)
        output_hw(name, x_shape[1:3], window, strides, pads)
        dt = jnp.result_type(x, w)  # XLA's convolution takes one dtype: promote as x @ w does
        y = lax.conv_general_dilated(x.astype(dt), w.astype(dt), strides, pads,
                                     dimension_numbers=NHWC)
        return y + bias_shape(b, 4), x

    def backward(params, x, dy):
        w, _ = params
        pads = resolve_padding(padding, x.shape[1:3], window, strides)
        check_dy(name, dy, (x.shape[0], *output_hw(name, x.shape[1:3], window, strides, pads),
                            c_out))
        dt = jnp.result_type(x, w, dy)
        x, w, dy = x.astype(dt), w.astype(dt), dy.astype(dt)
        db = jnp.sum(dy, axis=(0, 1, 2))
        dw = conv_kernel_grad(x, dy, window, strides, pads)
        dx = conv_transpose_input(dy, w, x.shape[1:3], strides, pads)
        return Conv2DParams(dw, db), dx

    # jit: an eager call compiles once per shape instead of once per primitive (inlined under
    # an outer jit). Argument checks depend only on static shapes, so they still run.
    return Layer(init, jax.jit(forward), jax.jit(backward), name)
