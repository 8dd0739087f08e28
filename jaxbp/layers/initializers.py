"""Weight initialisers, by name or as callables ``(key, shape, dtype) -> array``.

Fans are read from the shape: ``(d_in, d_out)`` for dense and recurrent weights, and
``(kh, kw, c_in, c_out)`` (HWIO) for convolution kernels, where the receptive field
``kh kw`` multiplies both fans.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxbp._core import Array, float_dtype
from jaxbp._validate import one_of

#: An initialiser: ``(key, shape, dtype) -> array`` of that shape (``dtype=None``: float32, or
#: float64 with x64 on), the fans read from ``shape`` as above.
Initializer = Callable[[jax.Array, tuple[int, ...], jnp.dtype], Array]


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    # (d_in, d_out) for dense; (kh, kw, c_in, c_out) for HWIO convolutions.
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def glorot_uniform(key, shape, dtype=None) -> Array:
    """Glorot/Xavier uniform: ``U(-a, a)``, ``a = sqrt(6 / (fan_in + fan_out))``; for
    tanh/sigmoid."""
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


#: Name -> initialiser, for a layer's ``w_init=`` (and ``recurrent_init=``) given as a string;
#: ``xavier_*`` are other names of the ``glorot_*`` ones.
INITIALIZERS: dict[str, Initializer] = {
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "xavier_uniform": glorot_uniform,
    "xavier_normal": glorot_normal,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
}


def get_initializer(name: str, init: str | Initializer, arg: str = "w_init") -> Initializer:
    """Resolves an initialiser given by name (see ``INITIALIZERS``) or as a callable.

    ``name`` is the layer asking (for the message), ``arg`` the argument that named ``init``.
    """
    if callable(init):
        return init
    return INITIALIZERS[one_of(name, arg, init, INITIALIZERS,
                               "a known initialiser or a callable (key, shape, dtype) -> array",
                               f"{arg}='glorot_uniform'")]


def jitted_initializer(name: str, init: str | Initializer, arg: str = "w_init") -> Initializer:
    """:func:`get_initializer` under ``jax.jit`` with ``shape`` and ``dtype`` static."""
    # jitted draws (shape and dtype static): one compile per shape, not one per primitive
    return jax.jit(get_initializer(name, init, arg), static_argnums=(1, 2))


__all__ = ["INITIALIZERS", "Initializer", "get_initializer", "glorot_normal", "glorot_uniform",
           "he_normal", "he_uniform", "jitted_initializer"]
