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

from typing import NamedTuple, Sequence, Union

import jax
import jax.numpy as jnp
from jax import lax

from jaxbp._core import Array, Layer, check_input_shape
from jaxbp.layers.dense import Initializer, bias_shape, get_initializer

Padding = Union[str, Sequence[Sequence[int]]]
Pads = tuple[tuple[int, int], tuple[int, int]]

_NHWC = ("NHWC", "HWIO", "NHWC")


class Conv2DParams(NamedTuple):
    """Parameters of :func:`conv2d`: ``w: (kh, kw, c_in, c_out)`` (HWIO), ``b: (c_out,)``."""

    w: Array
    b: Array


# --------------------------------------------------------------------------------------
# Window arithmetic shared with pooling: plain Python on static shapes.


def pair(name: str, arg: str, value) -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(3, 2) -> (3, 2)``; rejects anything but positive ints."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        items = tuple(value)
    else:
        items = (value, value)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in items):
        raise ValueError(
            f"{name}: {arg}={value!r} must be a positive int or a pair of positive ints "
            f"(height, width), e.g. {arg}=3 or {arg}=(3, 2).")
    return items


def check_padding(name: str, padding) -> Padding:
    """Validates ``padding``: ``"SAME"``, ``"VALID"`` or ``((top, bottom), (left, right))``."""
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise ValueError(
                f"{name}: padding={padding!r} is not understood; expected 'SAME', 'VALID' or "
                f"explicit ((top, bottom), (left, right)) non-negative ints.")
        return padding.upper()
    try:
        (t, b), (l, r) = padding
        pads = ((t, b), (l, r))
    except (TypeError, ValueError):
        pads = None
    if pads is None or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                               for side in pads for v in side):
        raise ValueError(
            f"{name}: padding={padding!r} is not understood; expected 'SAME', 'VALID' or "
            f"explicit ((top, bottom), (left, right)) non-negative ints, e.g. ((1, 1), (0, 2)).")
    return pads


def resolve_padding(padding: Padding, hw: tuple[int, int], window: tuple[int, int],
                    strides: tuple[int, int]) -> Pads:
    """Explicit ``((pt, pb), (pl, pr))`` for an input of spatial size ``hw``.

    ``"SAME"`` gives ``ceil(H / sh)`` outputs; the total padding
    ``max((Ho - 1) sh + kh - H, 0)`` is split with the extra row at the bottom (and the extra
    column at the right) when it is odd, as in ``lax.conv_general_dilated``.
    """
    if padding == "VALID":
        return ((0, 0), (0, 0))
    if padding == "SAME":
        pads = []
        for size, k, s in zip(hw, window, strides):
            out = -(-size // s)
            total = max((out - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    return tuple(tuple(p) for p in padding)


def output_hw(name: str, hw, window, strides, pads: Pads) -> tuple[int, int]:
    """``(H + pt + pb - kh) // sh + 1`` per spatial axis; raises if the window does not fit."""
    out = []
    for size, k, s, (lo, hi), axis in zip(hw, window, strides, pads, ("height", "width")):
        padded = size + lo + hi
        if padded < k:
            raise ValueError(
                f"{name}: the {axis} {size} (padded to {padded}) is smaller than the window "
                f"{k}. Fix: use padding='SAME', a smaller window, or a larger input.")
        out.append((padded - k) // s + 1)
    return tuple(out)


def unused_tail(hw, window, strides, pads: Pads) -> tuple[int, int]:
    """Padded rows (columns) past the last window: ``(H + pt + pb - kh) mod sh``.

    They influence no output, so their gradient is zero; the backward convolutions trim them.
    """
    return tuple((size + lo + hi - k) % s
                 for size, k, s, (lo, hi) in zip(hw, window, strides, pads))


def conv_transpose_input(dy: Array, w: Array, hw, strides, pads: Pads,
                         groups: int = 1) -> Array:
    """``dx`` of ``y = conv(x, w)``: dy dilated by the stride, correlated with the flipped kernel.

    Args:
      dy: ``(batch, Ho, Wo, c_out)``.
      w: ``(kh, kw, c_in / groups, c_out)``, the forward's HWIO kernel.
      hw: the forward input's ``(H, W)``.
      strides, pads: the forward's stride and explicit padding.
      groups: the forward's ``feature_group_count`` (``c_in`` for a depthwise window sum).

    Returns:
      ``(batch, H, W, c_in)``. The padding ``k - 1 - p_lo`` low and ``k - 1 - p_hi + tail``
      high makes the full correlation land exactly on the unpadded input (negative values crop).
    """
    kh, kw = w.shape[:2]
    tails = unused_tail(hw, (kh, kw), strides, pads)
    trans_pads = [(k - 1 - lo, k - 1 - hi + tail)
                  for k, (lo, hi), tail in zip((kh, kw), pads, tails)]
    # Flip in space and swap in/out channels within each group (c_out becomes the input
    # feature): (kh, kw, cg_in, G * cg_out) -> (kh, kw, cg_out, G * cg_in); G = 1 is a swapaxes.
    # Written as an explicit transpose to plain HWIO, because XLA's CPU compiler leaves
    # convolutions with other dimension numbers on a slow generic path inside lax.scan loops
    # (~14x slower there; benchmarks/conv_layout.py).
    cg_in, c_out = w.shape[2], w.shape[3]
    cg_out = c_out // groups
    rhs = jnp.flip(w, axis=(0, 1)).reshape(kh, kw, cg_in, groups, cg_out)
    rhs = rhs.transpose(0, 1, 4, 3, 2).reshape(kh, kw, cg_out, groups * cg_in)
    return lax.conv_general_dilated(dy, rhs, (1, 1), trans_pads, lhs_dilation=strides,
                                    dimension_numbers=_NHWC, feature_group_count=groups)


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
                                  dimension_numbers=_NHWC)
    return jnp.transpose(dw, (1, 2, 0, 3))


def check_images(name: str, x, channels: int | None, why: str = "") -> tuple[int, ...]:
    """Checks that ``x`` is an NHWC batch (``channels`` channels if given); returns its shape."""
    shape = getattr(x, "shape", None)
    if shape is None:
        raise TypeError(f"{name}: input x must be an array (batch, H, W, channels), got "
                        f"{type(x).__name__}. Fix: pass jnp.asarray(x).")
    shape = tuple(shape)
    if len(shape) != 4 or (channels is not None and shape[3] != channels):
        want = f"(batch, H, W, {channels})" if channels is not None else "(batch, H, W, channels)"
        raise ValueError(
            f"{name}: input x has shape {shape}, but NHWC images {want} are expected"
            f"{' to match ' + why if why else ''}. Fix: reshape to NHWC, e.g. "
            f"x.reshape(batch, H, W, {channels if channels is not None else 'channels'}).")
    return shape


# --------------------------------------------------------------------------------------


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
    if isinstance(c_out, bool) or not isinstance(c_out, int) or c_out <= 0:
        raise ValueError(f"conv2d: c_out={c_out!r} must be a positive int, e.g. conv2d(16, 3).")
    name = f"conv2d({c_out}, {kernel_size})"
    window = pair(name, "kernel_size", kernel_size)
    strides = pair(name, "stride", stride)
    padding = check_padding(name, padding)
    # jitted draws (shape and dtype static): one compile per shape, not one per primitive
    w_initializer = jax.jit(get_initializer(name, w_init), static_argnums=(1, 2))

    def init(key, input_shape):
        shape = check_input_shape(name, input_shape)
        if len(shape) != 3:
            raise ValueError(
                f"{name}: input_shape={shape} must be (H, W, c_in) without the batch axis "
                f"(NHWC). Fix: reshape images to (H, W, channels), e.g. (8, 8, 1).")
        pads = resolve_padding(padding, shape[:2], window, strides)
        ho, wo = output_hw(name, shape[:2], window, strides, pads)
        w = w_initializer(key, (*window, shape[2], c_out), dtype)
        return Conv2DParams(w, jnp.zeros((c_out,), w.dtype)), (ho, wo, c_out)

    def forward(params, x, *, key=None):
        w, b = params
        x_shape = check_images(name, x, w.shape[2], f"w.shape={tuple(w.shape)}")
        pads = resolve_padding(padding, x_shape[1:3], window, strides)
        output_hw(name, x_shape[1:3], window, strides, pads)
        y = lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_NHWC)
        return y + bias_shape(b, 4), x

    def backward(params, x, dy):
        w, _ = params
        pads = resolve_padding(padding, x.shape[1:3], window, strides)
        db = jnp.sum(dy, axis=(0, 1, 2))
        dw = conv_kernel_grad(x, dy, window, strides, pads)
        dx = conv_transpose_input(dy, w, x.shape[1:3], strides, pads)
        return Conv2DParams(dw, db), dx

    # jit: an eager call compiles once per shape instead of once per primitive (inlined under
    # an outer jit). Argument checks depend only on static shapes, so they still run.
    return Layer(init, jax.jit(forward), jax.jit(backward), name)
