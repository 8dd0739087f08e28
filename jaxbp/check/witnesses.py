"""The three witnesses of a gradient check, computed in one jitted call per shape.

``oracle(fn, extra)`` compiles, for a scalar ``fn(primal, aux)``: the manual witness
``extra(primal, aux)``, ``fn`` and ``jax.grad(fn)`` (autodiff), and central and one-sided finite
differences of ``fn`` in every element of ``primal``, ``vmap``-ed over chunks of elements (each
element perturbed by ``±h`` with a scatter, so a chunk is one batched evaluation). Small checks are
dominated by XLA compile time, so everything for the first chunk is one compiled call.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxbp.check.report import FiniteDiff

_MAX_CHUNK = 64
_MAX_CHUNK_FLOATS = 4_000_000


def is_float(a) -> bool:
    return a is not None and jnp.issubdtype(jnp.result_type(a), jnp.floating)


def to64(tree):
    """Floating leaves to float64 (call inside the x64 context); other leaves as arrays.

    Through NumPy and ``device_put``: an eager JAX cast (even ``jnp.asarray``) compiles once
    per shape.
    """
    def cast(a):
        if isinstance(a, jax.Array) and not is_float(a):
            return a
        return jax.device_put(np.asarray(a, np.float64) if is_float(a) else np.asarray(a))

    return jax.tree_util.tree_map(cast, tree)


# --------------------------------------------------------------------------------------
# Finite differences: every element of the primal pytree, vmap-ed in jitted chunks.

# Small checks are dominated by XLA compile time, which the backend's optimisation level
# roughly halves at level 0; large ones (many chunks) keep the optimised code.
_QUICK_COMPILE = {"xla_backend_optimization_level": 0}
_QUICK_BELOW = 4096


class Oracle(NamedTuple):
    """The jitted functions of one check (see :func:`oracle`)."""

    manual_autodiff_and_fd: Callable
    """``(primal, aux, idx, up, down)``: the manual witness, ``f``, ``grad f`` and the finite
    differences of one chunk, in one compiled call (a check that fits one chunk)."""
    manual_and_autodiff: Callable
    """``(primal, aux)``: the manual witness, ``f`` and ``grad f``."""
    fd_chunk: Callable
    """``(primal, aux, idx, up, down)``: the finite differences of one chunk (optimised code)."""
    fd_chunk_quick_compile: Callable
    """``fd_chunk`` compiled at backend optimisation level 0 (for checks of few elements)."""


def oracle(fn: Callable, extra: Callable) -> Oracle:
    """Jitted witnesses of ``fn(primal, aux) -> scalar``.

    ``manual_and_autodiff`` returns ``extra(primal, aux)`` (the manual witness), ``fn`` and
    ``grad fn``; ``fd_chunk`` a chunk of finite differences; ``manual_autodiff_and_fd`` both at
    once, for a check that fits one chunk — one compile per shape is what a small check costs.
    """

    def fd_chunk(primal, aux, idx, up, down):
        flat, unravel = ravel_pytree(primal)

        def one(i, u, d):
            return (fn(unravel(flat.at[i].add(u)), aux), fn(unravel(flat.at[i].add(-d)), aux))

        return jax.vmap(one)(idx, up, down)

    def manual_and_autodiff(primal, aux):
        value, grad = jax.value_and_grad(fn)(primal, aux)
        return extra(primal, aux), value, grad

    def manual_autodiff_and_fd(primal, aux, idx, up, down):
        return manual_and_autodiff(primal, aux), fd_chunk(primal, aux, idx, up, down)

    quick = dict(compiler_options=_QUICK_COMPILE)
    return Oracle(manual_autodiff_and_fd=jax.jit(manual_autodiff_and_fd, **quick),
                  manual_and_autodiff=jax.jit(manual_and_autodiff, **quick),
                  fd_chunk=jax.jit(fd_chunk), fd_chunk_quick_compile=jax.jit(fd_chunk, **quick))


def cache(maxsize: int):
    """``functools.lru_cache`` that falls back to no caching for unhashable arguments (a
    hand-made Layer holding a list): compiled witnesses are reused when they can be."""
    def wrap(fn):
        cached = functools.lru_cache(maxsize=maxsize)(fn)

        @functools.wraps(fn)
        def call(*args):
            try:
                hash(args)
            except TypeError:
                return fn(*args)
            return cached(*args)
        return call
    return wrap


def witnesses(oracle: Oracle, primal, aux, *, step: float, magnitude: Callable = lambda e: 0.0):
    """Runs the oracle: ``(manual, autodiff, [FiniteDiff per leaf of primal])``.

    Every element is perturbed by ``±h``, ``h = step · max(1, |θ|)``; ``magnitude(manual)``
    bounds the terms summed in the objective and sets the round-off estimate
    ``noise = 32 eps max(magnitude, |f|) / h``.
    """
    leaves = jax.tree_util.tree_leaves(primal)  # the order ravel_pytree flattens in
    theta = np.concatenate([np.asarray(v, np.float64).ravel() for v in leaves] or [np.zeros(0)])
    n = theta.size
    h = step * np.maximum(1.0, np.abs(theta))
    up, down = (theta + h) - theta, theta - (theta - h)  # steps exactly representable
    size = 1
    while size < min(n, _MAX_CHUNK, max(1, _MAX_CHUNK_FLOATS // max(n, 1))):
        size *= 2
    plus, minus = np.empty(n), np.empty(n)
    if n <= size:  # one chunk: a single compiled call does everything
        idx = np.minimum(np.arange(size), max(n - 1, 0))
        (manual, f0, auto), (fp, fm) = oracle.manual_autodiff_and_fd(primal, aux, idx, up[idx],
                                                                     down[idx])
        plus[:], minus[:] = np.asarray(fp)[:n], np.asarray(fm)[:n]
    else:
        manual, f0, auto = oracle.manual_and_autodiff(primal, aux)
        run = oracle.fd_chunk_quick_compile if n < _QUICK_BELOW else oracle.fd_chunk
        for start in range(0, n, size):
            idx = np.minimum(np.arange(start, start + size), n - 1)
            fp, fm = run(primal, aux, idx, up[idx], down[idx])
            stop = min(start + size, n)
            plus[start:stop] = np.asarray(fp)[: stop - start]
            minus[start:stop] = np.asarray(fm)[: stop - start]
    f0 = float(f0)
    eps = np.finfo(np.float64).eps
    noise = 32 * eps * max(float(magnitude(manual)), abs(f0)) / np.minimum(up, down)
    fd = FiniteDiff((plus - minus) / (up + down), (plus - f0) / up, (f0 - minus) / down, noise)
    out, offset = [], 0
    for leaf in leaves:
        k = int(np.prod(leaf.shape))
        out.append(FiniteDiff(*(v[offset:offset + k].reshape(leaf.shape) for v in fd)))
        offset += k
    return manual, auto, out


__all__ = ["Oracle", "cache", "is_float", "oracle", "to64", "witnesses"]
