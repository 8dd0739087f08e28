"""Finite differences where they are needed: the sampled mode of a large check.

Full element-wise finite differences cost two evaluations of ``f`` per element, O(elements²) for
a network. Manual against autodiff needs none (one backward each, exact in float64) and is
compared on *every* element, which is what names a sparse error (one wrong element, one wrong
row). Finite differences, the third witness, are then taken only

- at a few elements of each leaf: the worst manual-vs-autodiff disagreements, the largest
  autodiff gradients and a few random ones (:data:`WORST`, :data:`LARGEST`, :data:`RANDOM`);
- along :data:`DIRECTIONS` random directions per leaf: with ``s_i = h_i r_i / √n`` over the
  leaf's ``n`` elements, ``r_i = ±1`` (a hash of the element index and a seed),
  ``h_i = step · max(1, |θ_i|)``, and ``v = s / step`` (so ``|v| ≈ 1`` and the curvature term
  ``step · vᵀHv`` of the one-sided differences stays small), the central difference
  ``(f(θ + s) − f(θ − s)) / 2 step`` against ``<grad, v>``. A wrong rule that manual and
  autodiff share shows there even when it is wrong at one element only.

So the cost is O(leaves) evaluations of ``f``, in one compiled call (``lax.map`` over the
perturbations, :data:`BATCH` at a time, each a scatter-free masked update of the flattened
parameters).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

WORST = 4
"""Elements per leaf with the largest ``|manual − autodiff|`` (where they differ at all)."""
LARGEST = 2
"""Elements per leaf with the largest ``|autodiff|``."""
RANDOM = 2
"""Random elements per leaf."""
DIRECTIONS = 2
"""Random directional derivatives per leaf."""
BATCH = 8
"""Perturbations evaluated together (``vmap``) inside the ``lax.map``."""


class Specs(NamedTuple):
    """The perturbations of one sampled check, one entry each (int arrays): a perturbation
    changes elements ``start <= i < stop`` of the flattened primal, by ``±h_i`` for an element
    (``seed < 0``) or by ``±h_i r_i / √(stop − start)`` with signs hashed from ``seed`` for a
    direction."""

    seed: np.ndarray
    start: np.ndarray
    stop: np.ndarray


def _signs(index, seed, xp, dtype):
    """``±1`` per element index: a multiply-xorshift hash of ``(index, seed)`` (uint32)."""
    z = (index.astype(xp.uint32) * xp.uint32(0x9E3779B1)) ^ (seed.astype(xp.uint32)
                                                              * xp.uint32(0x85EBCA77))
    z = z ^ (z >> xp.uint32(15))
    z = z * xp.uint32(0x2C1B3C6D)
    z = z ^ (z >> xp.uint32(12))
    return 1.0 - 2.0 * ((z >> xp.uint32(7)) & xp.uint32(1)).astype(dtype)


def sampled_fd(fn):
    """``run(primal, aux, flat_manual, flat_auto, specs, step)``, jitted: per perturbation
    ``f(θ + up)``, ``f(θ − down)``, ``<manual, up + down>``, ``<autodiff, up + down>``,
    ``Σ |autodiff| |up − down|`` and ``Σ |autodiff| |up|`` (``up = (θ + s) − θ`` and
    ``down = θ − (θ − s)``, the steps exactly as taken)."""

    def run(primal, aux, flat_m, flat_a, specs, step):
        flat, unravel = ravel_pytree(primal)
        index = jnp.arange(flat.size)
        h = step * jnp.maximum(1.0, jnp.abs(flat))

        def one(spec):
            seed, start, stop = spec
            mask = (index >= start) & (index < stop)
            root = jnp.sqrt((stop - start).astype(flat.dtype))
            signs = _signs(index, jnp.maximum(seed, 0), jnp, flat.dtype)
            r = jnp.where(seed < 0, 1.0, signs / root)
            s = jnp.where(mask, h * r, 0.0)
            plus, minus = flat + s, flat - s
            up, down = plus - flat, flat - minus
            both = up + down
            return (fn(unravel(plus), aux), fn(unravel(minus), aux), jnp.vdot(flat_m, both),
                    jnp.vdot(flat_a, both), jnp.sum(jnp.abs(flat_a * (up - down))),
                    jnp.sum(jnp.abs(flat_a * up)))

        return jax.lax.map(one, (specs.seed, specs.start, specs.stop), batch_size=BATCH)

    return jax.jit(run)


def choose(manual_leaves, auto_leaves, rng: np.random.Generator) -> list[np.ndarray]:
    """The flat element indices (within each leaf) to finite-difference, per leaf."""
    out = []
    for m, a in zip(manual_leaves, auto_leaves):
        m, a = np.ravel(m), np.ravel(a)
        n = a.size
        if n == 0:
            out.append(np.zeros(0, int))
            continue
        diff = np.abs(m - a) if m.shape == a.shape else np.zeros(n)
        diff = np.where(np.isfinite(diff), diff, np.inf)
        picks: list[int] = []
        for score, k in ((diff, WORST), (np.abs(a), LARGEST)):
            top = np.argsort(-score, kind="stable")[:k]
            picks.extend(int(i) for i in top if score[i] > 0)
        picks.extend(int(i) for i in rng.choice(n, min(RANDOM, n), replace=False))
        out.append(np.unique(np.asarray(picks, np.int_)))
    return out


def specs_for(sizes, chosen, seed: int) -> tuple[Specs, int]:
    """The perturbation table (padded to a multiple of :data:`BATCH`, so compiles are reused)
    and the number of real entries: per leaf its chosen elements, then its directions."""
    seeds: list[int] = []
    starts: list[int] = []
    stops: list[int] = []
    offset = 0
    for j, (size, idx) in enumerate(zip(sizes, chosen)):
        for i in idx:
            seeds.append(-1)
            starts.append(offset + i)
            stops.append(offset + i + 1)
        if size > 1:
            for d in range(DIRECTIONS):
                seeds.append((seed * 7919 + 131 * j + d) % (2**31 - 1))
                starts.append(offset)
                stops.append(offset + size)
        offset += size
    n = len(seeds)
    pad = max(BATCH, -(-n // BATCH) * BATCH)
    fill = lambda v, x: np.asarray(v + [x] * (pad - n), np.int32)  # noqa: E731
    return Specs(fill(seeds, -1), fill(starts, 0), fill(stops, 1 if sum(sizes) else 0)), n


__all__ = ["BATCH", "DIRECTIONS", "LARGEST", "RANDOM", "WORST", "Specs", "choose",
           "sampled_fd", "specs_for"]
