"""Window arithmetic shared by convolution and pooling: plain Python on static NHWC shapes.

A window ``(kh, kw)`` slides with stride ``(sh, sw)`` over an input zero-padded by
``((pt, pb), (pl, pr))``; output ``(p, q)`` reads rows ``p sh .. p sh + kh - 1`` and columns
``q sw .. q sw + kw - 1`` of the padded input. Also here: the transposed convolution that is
the input gradient of both ``conv2d`` and ``avg_pool``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from jax import lax

from jaxbp._core import Array
from jaxbp._validate import fail
from jaxbp.layers._shared import example_shape

Padding = str | Sequence[Sequence[int]]
Pads = tuple[tuple[int, int], tuple[int, int]]

NHWC = ("NHWC", "HWIO", "NHWC")


def pair(name: str, arg: str, value) -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(3, 2) -> (3, 2)``; rejects anything but positive ints."""
    items = tuple(value) if isinstance(value, (tuple, list)) and len(value) == 2 else (value, value)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in items):
        fail(name, arg, value, "a positive int or a pair of positive ints (height, width)",
             f"{arg}=3 or {arg}=(3, 2)")
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
        (top, bottom), (left, right) = padding
        pads = ((top, bottom), (left, right))
    except (TypeError, ValueError):
        pads = None
    if pads is None or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                               for side in pads for v in side):
        raise ValueError(
            f"{name}: padding={padding!r} is not understood; expected 'SAME', 'VALID' or "
            f"explicit ((top, bottom), (left, right)) non-negative ints, e.g. ((1, 1), (0, 2)).")
    return pads


def image_shape(name: str, input_shape, channels: str, fix: str) -> tuple[int, int, int]:
    """Checks ``init``'s ``input_shape`` is one NHWC image ``(H, W, channels)``; returns it.

    ``channels`` names the last axis in the message (``"c_in"``), ``fix`` suggests a remedy.
    """
    height, width, c = example_shape(name, input_shape, ("H", "W", channels), fix, " (NHWC)")
    return height, width, c


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


def resolve_padding(padding: Padding, hw: tuple[int, ...], window: tuple[int, int],
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
        return pads[0], pads[1]
    assert not isinstance(padding, str), padding  # check_padding allows only these two
    (top, bottom), (left, right) = padding  # explicit, validated by check_padding
    return (top, bottom), (left, right)


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
                                    dimension_numbers=NHWC, feature_group_count=groups)


__all__ = ["NHWC", "Pads", "Padding", "check_images", "check_padding", "conv_transpose_input",
           "image_shape", "output_hw", "pair", "resolve_padding", "unused_tail"]
