"""The three witnesses of a gradient check, computed in one jitted call per shape.

``oracle(fn, extra)`` compiles, for a scalar ``fn(primal, aux)``: the manual witness
``extra(primal, aux)``, ``fn`` and ``jax.grad(fn)`` (autodiff), and central and one-sided finite
differences of ``fn`` in every element of ``primal``, ``vmap``-ed over chunks of elements (each
element perturbed by ``±h`` with a scatter, so a chunk is one batched evaluation). Small checks are
dominated by XLA compile time, so everything for the first chunk is one compiled call.
"""

from __future__ import annotations

import functools
from typing import NamedTuple
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxbp.check.sampled import choose, sampled_fd, specs_for
from jaxbp.check.verdicts import Directional, FiniteDiff

_MAX_CHUNK = 64
_MAX_CHUNK_FLOATS = 4_000_000


def is_float(a) -> bool:
    return a is not None and jnp.issubdtype(jnp.result_type(a), jnp.floating)


def cast(tree, dtype):
    """Floating leaves to ``dtype`` (call inside :func:`precision`); other leaves as arrays.

    Through NumPy and ``device_put``: an eager JAX cast (even ``jnp.asarray``) compiles once
    per shape.
    """
    def one(a):
        if isinstance(a, jax.Array) and not is_float(a):
            return a
        return jax.device_put(np.asarray(a, jnp.dtype(dtype)) if is_float(a) else np.asarray(a))

    return jax.tree_util.tree_map(one, tree)


def to64(tree):
    """Floating leaves to float64 (call inside the x64 context); other leaves as arrays."""
    return cast(tree, np.float64)


def precision(dtype):
    """The context a check in ``dtype`` runs in: x64 on for float64, off for a narrower dtype
    (as the user's own float32 code runs: ``jnp.zeros(n)`` is float32 there, not float64)."""
    return jax.enable_x64(jnp.dtype(dtype) == jnp.float64)


def float_dtype(leaves) -> np.dtype:
    """The floating dtype a check computes in: the first floating leaf's, else float64."""
    return next((jnp.dtype(jnp.result_type(v)) for v in leaves if is_float(v)),
                np.dtype(np.float64))


# --------------------------------------------------------------------------------------
# Finite differences: every element of the primal pytree, vmap-ed in jitted chunks.

# Small checks are dominated by XLA compile time, which the backend's optimisation level
# roughly halves at level 0; large ones (many chunks) keep the optimised code.
_QUICK_COMPILE = {"xla_backend_optimization_level": 0}
_QUICK_BELOW = 4096

FULL_FD_MAX = 12_000
"""``fd="auto"`` differences every element up to this many (the primal's total), and samples
above it (:mod:`jaxbp.check.sampled`): small checks keep the full third witness."""
FD_MODES = ("auto", "full", "sampled")


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
    fd_sampled: Callable
    """``(primal, aux, flat_manual, flat_auto, specs, step)``: sampled finite differences."""
    fn: Callable
    """The checked scalar ``fn(primal, aux)`` itself (traced for its custom rules)."""


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

    quick = _QUICK_COMPILE
    return Oracle(manual_autodiff_and_fd=jax.jit(manual_autodiff_and_fd, compiler_options=quick),
                  manual_and_autodiff=jax.jit(manual_and_autodiff, compiler_options=quick),
                  fd_chunk=jax.jit(fd_chunk),
                  fd_chunk_quick_compile=jax.jit(fd_chunk, compiler_options=quick),
                  fd_sampled=sampled_fd(fn), fn=fn)


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


def witnesses(oracle: Oracle, primal, aux, *, step: float, magnitude: Callable = lambda e: 0.0,
              fd: str = "auto", grads: Callable | None = None, seed: int = 0):
    """Runs the oracle: ``(manual, autodiff, [FiniteDiff per leaf of primal])``.

    Every element (``fd="full"``, or ``"auto"`` up to :data:`FULL_FD_MAX` elements) or a
    sample of elements and directions (``"sampled"``, :mod:`jaxbp.check.sampled`) is perturbed
    by ``±h``, ``h = step · max(1, |θ|)``; ``magnitude(manual)`` bounds the terms summed in the
    objective and sets the round-off estimate ``noise = 32 eps max(magnitude, |f|) / h``.
    ``grads(manual)`` lists the manual gradient's leaves in the primal's order (default: the
    leaves of ``manual``), used to choose the sampled elements.
    """
    leaves = jax.tree_util.tree_leaves(primal)  # the order ravel_pytree flattens in
    dtype = float_dtype(leaves)
    eps = float(jnp.finfo(dtype).eps)
    theta = np.concatenate([np.asarray(v, dtype).ravel() for v in leaves] or [np.zeros(0, dtype)])
    n = theta.size
    h = (step * np.maximum(1.0, np.abs(theta.astype(np.float64)))).astype(dtype)
    up = ((theta + h) - theta).astype(np.float64)  # the steps exactly as taken in dtype
    down = (theta - (theta - h)).astype(np.float64)
    theta = theta.astype(np.float64)
    if fd == "sampled" or (fd == "auto" and n > FULL_FD_MAX):
        return _sampled(oracle, primal, aux, leaves, theta, up, down, step, magnitude,
                        grads or jax.tree_util.tree_leaves, seed, eps)
    steps = lambda v: v.astype(dtype)  # noqa: E731 — passed in the primal's own dtype
    size = 1
    while size < min(n, _MAX_CHUNK, max(1, _MAX_CHUNK_FLOATS // max(n, 1))):
        size *= 2
    plus, minus = np.empty(n), np.empty(n)
    if n <= size:  # one chunk: a single compiled call does everything
        idx = np.minimum(np.arange(size), max(n - 1, 0))
        (manual, f0, auto), (fp, fm) = oracle.manual_autodiff_and_fd(
            primal, aux, idx, steps(up[idx]), steps(down[idx]))
        plus[:], minus[:] = np.asarray(fp)[:n], np.asarray(fm)[:n]
    else:
        manual, f0, auto = oracle.manual_and_autodiff(primal, aux)
        run = oracle.fd_chunk_quick_compile if n < _QUICK_BELOW else oracle.fd_chunk
        for start in range(0, n, size):
            idx = np.minimum(np.arange(start, start + size), n - 1)
            fp, fm = run(primal, aux, idx, steps(up[idx]), steps(down[idx]))
            stop = min(start + size, n)
            plus[start:stop] = np.asarray(fp)[: stop - start]
            minus[start:stop] = np.asarray(fm)[: stop - start]
    f0 = float(f0)
    noise = _noise(magnitude(manual), f0, eps) / np.minimum(up, down)
    diffs = FiniteDiff((plus - minus) / (up + down), (plus - f0) / up, (f0 - minus) / down,
                       noise)
    return manual, auto, _split(diffs, leaves)


def _noise(magnitude, f0: float, eps: float) -> float:
    return 32 * eps * max(float(magnitude), abs(f0))


def _split(fd: FiniteDiff, leaves) -> list[FiniteDiff]:
    out, offset = [], 0
    for leaf in leaves:
        k = int(np.prod(leaf.shape))
        shape, part = leaf.shape, slice(offset, offset + k)
        checked = None if fd.checked is None else fd.checked[part].reshape(shape)
        out.append(FiniteDiff(fd.central[part].reshape(shape), fd.forward[part].reshape(shape),
                              fd.backward[part].reshape(shape), fd.noise[part].reshape(shape),
                              checked))
        offset += k
    return out


def _aligned(manual_leaves, auto_leaves) -> list[np.ndarray]:
    """Manual's leaves where they line up with autodiff's (same count and shape), else
    autodiff's (a malformed manual gradient fails on its own; the sample still needs one)."""
    auto = [np.asarray(a, np.float64) for a in auto_leaves]
    if len(manual_leaves) != len(auto):
        return auto
    return [np.asarray(m, np.float64) if np.shape(m) == a.shape else a
            for m, a in zip(manual_leaves, auto)]


def _sampled(oracle: Oracle, primal, aux, leaves, theta, up, down, step, magnitude, grads, seed,
             eps):
    manual, f0, auto = oracle.manual_and_autodiff(primal, aux)
    a_leaves = [np.asarray(a, np.float64) for a in jax.tree_util.tree_leaves(auto)]
    try:
        m_leaves = _aligned(grads(manual), a_leaves)
    except Exception:
        m_leaves = a_leaves
    sizes = [a.size for a in a_leaves]
    chosen = choose(m_leaves, a_leaves, np.random.default_rng(seed))
    specs, count = specs_for(sizes, chosen, seed)
    ravel = lambda ls: jax.device_put(np.concatenate([v.ravel() for v in ls] or [np.zeros(0)]))  # noqa: E731
    out = oracle.fd_sampled(primal, aux, ravel(m_leaves), ravel(a_leaves), specs, step)
    fp, fm, pm, pa, asym, absum = (np.asarray(v)[:count] for v in out)
    f0, n = float(f0), theta.size
    base = _noise(magnitude(manual), f0, eps)
    central, forward, backward = (np.full(n, np.nan) for _ in range(3))
    checked = np.zeros(n, bool)
    elem = specs.seed[:count] < 0
    at = specs.start[:count][elem]
    central[at] = (fp[elem] - fm[elem]) / (up[at] + down[at])
    forward[at] = (fp[elem] - f0) / up[at]
    backward[at] = (f0 - fm[elem]) / down[at]
    checked[at] = True
    fd = _split(FiniteDiff(central, forward, backward, base / np.minimum(up, down), checked),
                leaves)
    offset = 0
    for j, leaf_fd in enumerate(fd):
        d = ~elem & (specs.start[:count] == offset)
        offset += sizes[j]
        fd[j] = leaf_fd._replace(directions=Directional(
            pm[d] / (2 * step), pa[d] / (2 * step), (fp[d] - fm[d]) / (2 * step),
            (fp[d] - f0) / step, (f0 - fm[d]) / step,
            base / step + asym[d] / (2 * step) + 8 * eps * absum[d] / step))
    return manual, auto, fd


__all__ = ["FD_MODES", "FULL_FD_MAX", "Oracle", "cache", "cast", "float_dtype", "is_float",
           "oracle", "precision", "to64", "witnesses"]
