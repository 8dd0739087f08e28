"""Small pieces several layer families share: bias broadcasting and parameter-free plumbing."""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

import jax.numpy as jnp

from jaxbp._core import Array, Shape, check_input_shape


def bias_shape(b: Array, ndim: int) -> Array:
    """Reshapes a ``(d,)`` bias to broadcast explicitly against a rank-``ndim`` array."""
    return b.reshape((1,) * (ndim - 1) + b.shape)


def same_shape_init(name: str) -> Callable[[Any, Any], tuple[tuple, Shape]]:
    """``init`` of a parameter-free layer whose output has its input's shape: ``((), shape)``."""

    def init(key, input_shape):
        return (), check_input_shape(name, input_shape)

    return init


def example_shape(name: str, input_shape: Any, axes: tuple[str, ...], fix: str,
                  layout: str = "") -> Shape:
    """Checks ``init``'s ``input_shape``: one example with the named ``axes``; returns it.

    ``axes`` name the dimensions in the message (``("time", "d_in")``), ``layout`` follows them
    (``" (NHWC)"``), ``fix`` is the remedy, read after ``Fix:``.
    """
    shape = check_input_shape(name, input_shape)
    if len(shape) != len(axes):
        raise ValueError(
            f"{name}: input_shape={shape} must be ({', '.join(axes)}) without the batch axis"
            f"{layout}. Fix: {fix}.")
    return shape


def check_array(name: str, x: Any) -> None:
    """Raises ``TypeError`` unless ``x`` is an array (has a ``shape``)."""
    if not hasattr(x, "shape"):
        raise TypeError(f"{name}: input x must be an array, got {type(x).__name__}. "
                        f"Fix: pass jnp.asarray(x).")


def shape_token(x: Array, dtype: Any = None) -> Array:
    """A zero-size array that remembers ``x``'s shape (batch axis included) for backward.

    Shape ``(*x.shape, 0)``: it holds no values, so a cache that needs only the input's shape
    costs nothing, and it is a jit-safe pytree leaf, unlike a tuple of ints. ``dtype``
    (default ``x``'s) can mark what kind of cache it is.
    """
    return jnp.zeros((*x.shape, 0), x.dtype if dtype is None else dtype)


def token_shape(token: Array) -> Shape:
    """The shape :func:`shape_token` remembered."""
    return tuple(token.shape[:-1])


__all__ = ["bias_shape", "check_array", "example_shape", "same_shape_init", "shape_token",
           "token_shape"]
