"""What a combinator's :class:`~jaxbp.Wiring` tells a tool: each sublayer call's actual input,
key, params and output, and (by autodiff) the cotangent reaching each call's output.

Shared by the checker's localisation (``jaxbp.check.localize``) and ``jaxbp.summary``. Both
functions trace the combinator's wiring with ``run`` standing for the sublayers' real forwards,
so they work under ``jit`` and ``jax.eval_shape`` alike.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxbp._core import Layer, call_forward, has_state, substates, wiring_of


class Call(NamedTuple):
    """One use of a sublayer inside a combinator: ``y = sublayers[index].forward(params, x,
    key=key, state=state)[0]`` (``state``: the sublayer's entry of the combinator's state
    tuple, ``None`` for a sublayer without state)."""

    index: int  # type: ignore[assignment]  # mypy: a field may not shadow tuple.index
    params: Any
    x: Any
    key: Any
    y: Any
    state: Any = None


def _sublayer(layer: Layer, i: Any) -> Layer:
    """``layer.sublayers[i]``, or a ``ValueError`` naming the wiring's bad index."""
    subs = layer.sublayers
    if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(subs):
        raise ValueError(
            f"{layer.name}: its wiring called run({i!r}, ...), but it has {len(subs)} "
            f"sublayer(s), indexed 0..{len(subs) - 1}. Fix: call run(i, params_i, x_i, key_i) "
            f"with the index of the sublayer in Layer.sublayers.")
    return subs[i]


def _substate(layer: Layer, state, i: int):
    """Sublayer ``i``'s entry of ``layer``'s state (one entry per sublayer), or ``None``."""
    if not has_state(layer):
        return None
    return substates(layer.name, layer.sublayers, state)[i]


def wired_calls(layer: Layer, params, x, key=None, state=None) -> tuple[Any, list[Call]]:
    """``layer``'s output by its wiring, and every sublayer call made, in forward order."""
    wiring = wiring_of(layer)
    assert wiring is not None, "only for a combinator that declares its wiring"
    calls: list[Call] = []

    def run(i, p, xi, k=None):
        sub, s = _sublayer(layer, i), _substate(layer, state, i)
        y = call_forward(sub, p, xi, key=k, state=s)[0]
        calls.append(Call(i, p, xi, k, y, s))
        return y

    return wiring.apply(run, params, x, key), calls


def call_cotangents(layer: Layer, params, x, key, dy, calls: list[Call], state=None) -> list:
    """Autodiff's cotangent reaching the output of each of ``calls`` (in their order), given
    ``dy`` at the combinator's output: the gradient with respect to a zero added to each call's
    result, through the combinator's own wiring."""
    wiring = wiring_of(layer)
    assert wiring is not None, "only for a combinator that declares its wiring"

    def with_taps(taps):
        pending = iter(taps)

        def run(i, p, xi, k=None):
            y = call_forward(_sublayer(layer, i), p, xi, key=k,
                             state=_substate(layer, state, i))[0]
            return jax.tree_util.tree_map(jnp.add, y, next(pending))

        return wiring.apply(run, params, x, key)

    zeros = [jax.tree_util.tree_map(jnp.zeros_like, c.y) for c in calls]
    _, vjp = jax.vjp(with_taps, zeros)
    return vjp(dy)[0]


__all__ = ["Call", "call_cotangents", "wired_calls"]
