"""Branching combinators: networks that are not a chain, each piece itself a ``Layer``.

A branch is written as a ``serial`` of three pieces — split the path, run the branches, merge::

    bp.serial(bp.fan_out(2), bp.branches(bp.dense(4), bp.serial(bp.dense(4), bp.relu())), bp.add())

Forward, for ``n`` paths (tuple inputs and outputs; shapes without the batch axis in ``init``)::

    fan_out(n)          x                  -> (x, ..., x)                   n copies, params ()
    branches(f_1..f_n)  (x_1, ..., x_n)    -> (f_1(x_1), ..., f_n(x_n))     params (p_1, ..., p_n)
    add()               (x_1, ..., x_n)    -> x_1 + ... + x_n               one shape, params ()
    concat(axis=-1)     (x_1, ..., x_n)    -> [x_1 | ... | x_n] on axis     params ()

Backward, given ``dy`` (``dx`` has the structure of ``x``)::

    fan_out   dx   = dy_1 + ... + dy_n          x feeds n paths: the adjoint of a fan-out is a sum
    branches  (dp_i, dx_i) = f_i.backward(p_i, cache_i, dy_i)      each branch on its own
    add       dx_i = dy                         the adjoint of a sum is a copy (fan-out's transpose)
    concat    dx_i = dy[..., o_i : o_i + n_i, ...] on axis, o_i = n_1 + ... + n_{i-1}: a split

``concat``'s ``axis`` is counted on the arrays, batch axis included (``-1`` the last feature
axis, ``1`` the first); the batch axis itself cannot be concatenated. ``branches`` declares its
:class:`~jaxbp.Wiring` (branch ``i`` sees ``x[i]``), so the checker locates a slip inside one
branch. Derived in ``docs/derivations-combinators.md``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from jaxbp._core import (Layer, Wiring, call_forward, check_dy, check_input_shape,
                         check_input_shapes, is_shape_tuple, split_key, substate_rule, substates)
from jaxbp._validate import positive_int, require_layer
from jaxbp.layers._shared import check_array, shape_token, token_shape


def _shape_tuple(name: str, input_shape: Any, n: int | None, fix: str) -> tuple:
    """``init``'s ``input_shape`` as a tuple of shapes (``n`` of them, when fixed)."""
    if not is_shape_tuple(input_shape) or (n is not None and len(input_shape) != n):
        count = f"{n} shapes" if n is not None else "shapes"
        raise ValueError(
            f"{name}: input_shape={input_shape!r} must be a tuple of {count}, one per input "
            f"path, e.g. {tuple([(3,)] * (n or 2))}. Fix: {fix}.")
    return check_input_shapes(name, input_shape)


def _tuple_of(name: str, what: str, value: Any, n: int | None, fix: str) -> tuple:
    """``value`` (forward's ``x`` or backward's ``dy``), which must be a tuple of ``n``."""
    if not isinstance(value, (tuple, list)) or (n is not None and len(value) != n) or not value:
        got = (f"a {type(value).__name__} of length {len(value)}"
               if isinstance(value, (tuple, list)) else type(value).__name__)
        raise ValueError(
            f"{name}: {what} must be a tuple of {n if n is not None else 'one or more'} "
            f"arrays, one per path, got {got}. Fix: {fix}.")
    return tuple(value)


def _check_dys(name: str, dy: Any, tokens: tuple) -> tuple:
    """Backward's ``dy``: a tuple shaped like the tuple forward returned (one token each)."""
    dys = _tuple_of(name, "dy", dy, len(tokens), "pass dy shaped like the y this forward "
                                                 "returned (a tuple)")
    for d, token in zip(dys, tokens):
        check_dy(name, d, token_shape(token))
    return dys


# --------------------------------------------------------------------------------------
# fan_out: one input, n copies. Its adjoint is a sum.


def fan_out(n: int = 2) -> Layer:
    """``x -> (x,) * n``; backward ``dx = dy_1 + ... + dy_n`` (the adjoint of a fan-out).

    Shapes: ``x (batch, *s) -> n × (batch, *s)``; ``init`` returns ``(s,) * n``. No params.

    Examples:
      >>> import jax, jaxbp as bp
      >>> params, shape = bp.fan_out(3).init(jax.random.key(0), (4,))
      >>> params, shape
      ((), ((4,), (4,), (4,)))
    """
    n = positive_int("fan_out", "n", n, "fan_out(2)")
    name = f"fan_out({n})"

    def init(key, input_shape):
        return (), (check_input_shape(name, input_shape),) * n

    def forward(params, x, *, key=None):
        check_array(name, x)
        return (x,) * n, (shape_token(x),) * n

    def backward(params, tokens, dy):
        dys = _check_dys(name, dy, tokens)
        # x is read by n paths, so dL/dx is the SUM of the cotangents coming back along them.
        return (), functools.reduce(jnp.add, dys)

    return Layer(init, forward, backward, name)


# --------------------------------------------------------------------------------------
# branches: the i-th layer on the i-th input.


def branches(*layers: Layer) -> Layer:
    """``(x_1, ..., x_n) -> (f_1(x_1), ..., f_n(x_n))``, the i-th layer on the i-th input.

    Params ``(p_1, ..., p_n)``; backward ``(dp_i, dx_i) = f_i.backward(p_i, cache_i, dy_i)``,
    each branch on its own (no path crosses another). ``init`` takes a tuple of ``n`` shapes
    and returns the tuple of the branches' output shapes. A stochastic forward splits ``key``
    into one subkey per branch, as ``serial`` does per layer; a branch with state (batch
    norm) gets its own entry of the state tuple. (stax calls this ``parallel``.)

    Examples:
      >>> import jax, jaxbp as bp
      >>> net = bp.serial(bp.fan_out(2), bp.branches(bp.dense(4), bp.dense(2)), bp.concat())
      >>> net.init(jax.random.key(0), (3,))[1]
      (6,)
    """
    if not layers:
        raise ValueError("branches: no layers given; branches(*layers) applies the i-th layer "
                         "to the i-th input. Fix: e.g. branches(bp.dense(4), bp.identity()).")
    for i, layer in enumerate(layers):
        require_layer("branches", layer, f"layer {i}", "bp.dense(4)")
    n = len(layers)
    name = f"branches({', '.join(layer.name for layer in layers)})"
    fix_x = f"put bp.fan_out({n}) before it to feed one input to every branch"

    def init(key, input_shape):
        shapes = _shape_tuple(name, input_shape, n, fix_x)
        out = [layer.init(k, s) for layer, s, k in zip(layers, shapes, split_key(key, n))]
        return tuple(p for p, _ in out), tuple(tuple(s) for _, s in out)

    def check_params(params):
        if not isinstance(params, (tuple, list)) or len(params) != n:
            raise ValueError(
                f"{name}: params must be a tuple with one entry per branch ({n}), got "
                f"{type(params).__name__}. Fix: pass the params this layer's init returned.")

    def forward(params, x, *, key=None, state=None):
        check_params(params)
        xs = _tuple_of(name, "x", x, n, fix_x)
        out = [call_forward(layer, p, xi, key=k, state=s) for layer, p, xi, k, s in
               zip(layers, params, xs, split_key(key, n), substates(name, layers, state))]
        return tuple(y for y, _ in out), tuple(c for _, c in out)

    def backward(params, caches, dy):
        check_params(params)
        dys = _tuple_of(name, "dy", dy, n, "pass dy shaped like the y this forward returned "
                                           "(a tuple, one entry per branch)")
        out = [layer.backward(p, c, d) for layer, p, c, d in zip(layers, params, caches, dys)]
        return tuple(dp for dp, _ in out), tuple(dx for _, dx in out)

    def each(run, params, x, key=None):
        return tuple(run(i, params[i], x[i], k) for i, k in enumerate(split_key(key, n)))

    return Layer(init, forward, backward, name, tuple(layers), Wiring(each, "branch"),
                 substate_rule(tuple(layers), lambda caches: caches))


# --------------------------------------------------------------------------------------
# add and concat: merge a tuple of paths into one array.


def add() -> Layer:
    """``(x_1, ..., x_n) -> x_1 + ... + x_n``; backward ``dx_i = dy`` for every ``i``.

    All inputs have one shape (no broadcasting: its adjoint, a sum over the broadcast axes, is
    a slip waiting to happen). No params.

    Examples:
      >>> import jax, jaxbp as bp
      >>> bp.add().init(jax.random.key(0), ((4,), (4,)))
      ((), (4,))
    """
    name = "add"
    fix_x = "pass a tuple of same-shaped arrays, e.g. the output of bp.branches(...)"

    def init(key, input_shape):
        shapes = _shape_tuple(name, input_shape, None, "put bp.fan_out(2) and bp.branches(...) "
                                                       "before it")
        if any(s != shapes[0] for s in shapes):
            raise ValueError(
                f"{name}: input_shape={shapes} has different shapes, but add sums its inputs "
                f"elementwise (no broadcasting). Fix: give every branch the output shape "
                f"{shapes[0]}, e.g. end each with dense({shapes[0][-1]}).")
        return (), shapes[0]

    def forward(params, x, *, key=None):
        xs = _tuple_of(name, "x", x, None, fix_x)
        for xi in xs:
            check_array(name, xi)
        if any(xi.shape != xs[0].shape for xi in xs):
            raise ValueError(
                f"{name}: inputs have shapes {tuple(tuple(xi.shape) for xi in xs)}, but add sums "
                f"them elementwise (no broadcasting). Fix: {fix_x}.")
        return functools.reduce(jnp.add, xs), tuple(shape_token(xi) for xi in xs)

    def backward(params, tokens, dy):
        check_dy(name, dy, token_shape(tokens[0]))
        # y is linear in each x_i with coefficient 1: each input receives dy itself.
        return (), tuple(dy.astype(t.dtype) for t in tokens)

    return Layer(init, forward, backward, name)


def _concat_axis(name: str, axis: int, rank: int) -> int:
    """``axis`` (counted on arrays of ``rank`` axes, batch included) as a non-negative axis,
    which must not be the batch axis."""
    if not -rank <= axis < rank or axis % rank == 0:
        raise ValueError(
            f"{name}: axis={axis} must be a feature axis of the {rank}-axis inputs (batch axis "
            f"included), 1..{rank - 1} or -{rank - 1}..-1; axis 0 is the batch axis. Fix: e.g. "
            f"concat(axis=-1).")
    return axis % rank


def concat(axis: int = -1) -> Layer:
    """``(x_1, ..., x_n) -> jnp.concatenate(x, axis)``; backward splits ``dy`` back.

    ``axis`` is counted on the arrays, batch axis included (``-1``: the last). Shapes:
    ``x_i (batch, ..., n_i, ...)`` -> ``(batch, ..., n_1 + ... + n_n, ...)``, every other axis
    equal; backward ``dx_i = dy[..., o_i : o_i + n_i, ...]``, ``o_i = n_1 + ... + n_{i-1}``. No
    params.

    Examples:
      >>> import jax, jaxbp as bp
      >>> bp.concat(axis=1).init(jax.random.key(0), ((2, 3), (4, 3)))
      ((), (6, 3))
    """
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise TypeError(f"concat: axis={axis!r} must be an int (counted on the arrays, batch axis "
                        f"included). Fix: e.g. concat(axis=-1).")
    name = f"concat(axis={axis})"

    def init(key, input_shape):
        shapes = _shape_tuple(name, input_shape, None, "put bp.fan_out(2) and bp.branches(...) "
                                                       "before it")
        a = _concat_axis(name, axis, len(shapes[0]) + 1) - 1  # on shapes without the batch axis
        rest = [s[:a] + s[a + 1:] for s in shapes]
        if any(len(s) != len(shapes[0]) for s in shapes) or any(r != rest[0] for r in rest):
            raise ValueError(
                f"{name}: input_shape={shapes} cannot be concatenated on axis {axis}: every "
                f"other axis must match. Fix: give the branches outputs that differ on axis "
                f"{axis} only, or choose another axis.")
        out = list(shapes[0])
        out[a] = sum(s[a] for s in shapes)
        return (), tuple(out)

    def forward(params, x, *, key=None):
        xs = _tuple_of(name, "x", x, None, "pass a tuple of arrays, e.g. the output of "
                                           "bp.branches(...)")
        for xi in xs:
            check_array(name, xi)
        a = _concat_axis(name, axis, xs[0].ndim)
        rest = [xi.shape[:a] + xi.shape[a + 1:] for xi in xs]
        if any(xi.ndim != xs[0].ndim for xi in xs) or any(r != rest[0] for r in rest):
            raise ValueError(
                f"{name}: inputs have shapes {tuple(tuple(xi.shape) for xi in xs)}, which differ "
                f"on an axis other than {axis}. Fix: pass the params this network's init "
                f"returned for this input shape.")
        return jnp.concatenate(xs, axis=a), tuple(shape_token(xi) for xi in xs)

    def backward(params, tokens, dy):
        shapes = [token_shape(t) for t in tokens]
        a = _concat_axis(name, axis, len(shapes[0]))
        out = list(shapes[0])
        out[a] = sum(s[a] for s in shapes)
        check_dy(name, dy, tuple(out))
        # The adjoint of placing x_i at offset o_i along the axis is reading it back from there.
        starts = [sum(s[a] for s in shapes[:i]) for i in range(len(shapes))]
        return (), tuple(jax.lax.slice_in_dim(dy, o, o + s[a], axis=a).astype(t.dtype)
                         for o, s, t in zip(starts, shapes, tokens))

    return Layer(init, forward, backward, name)


__all__ = ["add", "branches", "concat", "fan_out"]
