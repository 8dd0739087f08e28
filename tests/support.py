"""Comparison machinery shared by the tests (and exercised on wrong derivations)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def rel_err(a, b) -> float:
    """max |a - b| / max(max |a|, max |b|), 0 when both are zero."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    scale = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(b), initial=0.0))
    diff = np.max(np.abs(a - b), initial=0.0)
    return 0.0 if diff == 0.0 else float(diff / max(scale, 1e-300))


def assert_trees_close(got, want, rtol: float, what: str = "") -> None:
    """Asserts two pytrees have the same structure and every leaf agrees to ``rtol``."""
    s_got, s_want = jax.tree_util.tree_structure(got), jax.tree_util.tree_structure(want)
    assert s_got == s_want, f"{what}: structure {s_got} != {s_want}"
    bad = []
    for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(got),
                            jax.tree_util.tree_leaves(want)):
        name = jax.tree_util.keystr(path)
        if np.shape(g) != np.shape(w):
            bad.append(f"{name}: shape {np.shape(g)} != {np.shape(w)}")
            continue
        if not np.all(np.isfinite(np.asarray(g))):
            bad.append(f"{name}: non-finite values")
            continue
        e = rel_err(g, w)
        if e > rtol:
            bad.append(f"{name}: relative error {e:.3e} > {rtol:.1e}")
    assert not bad, f"{what}: " + "; ".join(bad)


def random_like_shape(seed, shape, dtype=jnp.float64, away_from_zero: float = 0.0):
    """Standard normal values; with ``away_from_zero`` every |value| >= that margin (off kinks).

    Drawn with NumPy: a jax.random draw would compile anew for every shape hypothesis tries.
    """
    x = np.random.default_rng(seed).standard_normal(shape)
    if away_from_zero:
        x = np.where(x >= 0, x + away_from_zero, x - away_from_zero)
    return jnp.asarray(x, dtype)


def layer_vjp_pair(layer, params, x, dy, *, key=None, jit: bool = False):
    """(manual, autodiff) ``(dparams, dx)`` for one layer at ``(params, x)`` along ``dy``."""

    def manual(p, x, dy):
        _, cache = layer.forward(p, x, key=key)
        return layer.backward(p, cache, dy)

    def oracle(p, x, dy):
        _, vjp = jax.vjp(lambda p, x: layer.forward(p, x, key=key)[0], p, x)
        return vjp(dy)

    if jit:  # one program for both: one compile
        return jax.jit(lambda p, x, dy: (manual(p, x, dy), oracle(p, x, dy)))(params, x, dy)
    return manual(params, x, dy), oracle(params, x, dy)


def assert_layer_matches_vjp(layer, input_shape, *, batch: int, seed: int, rtol: float = 1e-10,
                             jit: bool = False, away_from_zero: float = 0.0,
                             make_input=None, dtype=jnp.float64, stochastic: bool = False):
    """Initialises ``layer``, draws ``x`` and ``dy``, and compares backward with ``jax.vjp``."""
    k_init, k_fwd = jax.random.split(jax.random.key(seed))
    params, out_shape = layer.init(k_init, input_shape)
    params = jax.tree_util.tree_map(lambda a: a.astype(dtype), params)
    if make_input is not None:
        x = make_input(np.random.default_rng(seed), (batch, *input_shape))
    else:
        x = random_like_shape(seed, (batch, *input_shape), dtype, away_from_zero)
    # The output's shape without running (or, for a jitted layer, compiling) the forward
    # here: manual and oracle run it, eagerly or under jit.
    y = jax.eval_shape(lambda p, x: layer.forward(p, x, key=k_fwd if stochastic else None)[0],
                       params, x)
    assert y.shape == (batch, *out_shape), f"forward gave {y.shape}, init said {out_shape}"
    dy = random_like_shape(seed + 1, y.shape, dtype)
    got, want = layer_vjp_pair(layer, params, x, dy, key=k_fwd if stochastic else None, jit=jit)
    if not jnp.issubdtype(x.dtype, jnp.inexact):  # integer inputs (tokens) have no dx
        got, want = got[0], want[0]
    assert_trees_close(got, want, rtol, f"{layer.name} (batch={batch}, input_shape={input_shape})")


def compile_events() -> list:
    """A list that gets one entry (the compiled function's name) per XLA compile from now on;
    ``len`` before and after a call counts what it compiled."""
    seen: list = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kw: seen.append(kw.get("fun_name"))
        if event == "/jax/core/compile/backend_compile_duration" else None)
    return seen
