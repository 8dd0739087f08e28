"""Localisation: where, in backward order, a wrong gradient first appears.

A failing network is walked as backprop walks it: first the loss (``loss.grad`` at the actual
prediction), then the sublayers of each combinator from the last call to the first, each
checked on its own at its actual input and with the autodiff cotangent that reaches its output.
The first that fails is the location; nested combinators are followed.

What a combinator's sublayers see comes from its :class:`~jaxbp.Wiring` (``Layer.wiring``):
tracing it records every sublayer call's input, key and params, and autodiff of it with respect
to a zero added to each call's output gives the cotangent reaching that output — for a chain
(``serial``), a skip connection (``residual``), parallel paths (``branches``) or a user's own
combinator alike, without knowing which. A combinator that declares no wiring (or one whose
wiring does not reproduce its forward) is checked as one layer: located to it, never walked
as a guessed chain.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxbp._core import Layer, same_treedef, wiring_of
from jaxbp._wiring import call_cotangents, wired_calls
from jaxbp.check.point import Tolerance, layer_report, loss_report_and_grad, wrong_grads
from jaxbp.check.report import GradientReport
from jaxbp.check.witnesses import cache

Location = tuple[str | None, "GradientReport | None"]
"""A location in words, and the report of the located part checked on its own."""

NO_WIRING = ("checked as one layer: it has sublayers but declares no Layer.wiring, so its "
             "parts are not walked")
"""The note of a combinator that does not say how its sublayers are wired."""
COMBINES = "each of its sublayers is right on its own: the slip is in how it combines them"
"""The note of a combinator whose own backward (not a sublayer's) is wrong."""
_AGREE = 1e-6  # wiring vs forward, relative: a wiring that differs does not describe the forward
QUICK_COMPILE = {"xla_backend_optimization_level": 0}


def _agree(tol: Tolerance) -> float:
    """How close the wiring's output must be to the forward's: ``_AGREE`` in float64, the
    round-off ``√eps`` of a narrower dtype the check computes in."""
    return max(_AGREE, float(jnp.finfo(getattr(tol, "dtype", "float64")).eps) ** 0.5)


@cache(maxsize=64)
def wired_points(layer: Layer):
    """Jitted: ``(params, x, key, dy) -> (calls, cotangents, mismatch)``: every sublayer call
    of ``layer``'s wiring, the cotangent reaching each call's output, and how far the wiring's
    output is from ``layer.forward``'s (relative; 0 when the wiring describes the forward)."""

    @functools.partial(jax.jit, compiler_options=QUICK_COMPILE)  # run once per point: compile fast
    def run(params, x, key, dy):
        y, calls = wired_calls(layer, params, x, key)
        own = layer.forward(params, x, key=key)[0]
        gs = call_cotangents(layer, params, x, key, dy, calls)
        return calls, gs, _mismatch(y, own)

    return run


def _mismatch(y, own):
    tu = jax.tree_util
    if not same_treedef(tu.tree_structure(y), tu.tree_structure(own)) or any(
            jnp.shape(a) != jnp.shape(b) for a, b in zip(tu.tree_leaves(y), tu.tree_leaves(own))):
        return jnp.inf
    return jnp.max(jnp.stack([jnp.zeros(())] + [
        jnp.max(jnp.abs(a - b), initial=0.0) / jnp.maximum(1.0, jnp.max(jnp.abs(b), initial=0.0))
        for a, b in zip(tu.tree_leaves(y), tu.tree_leaves(own))]))


@cache(maxsize=64)
def network_output(net: Layer):
    """Jitted: ``net``'s own prediction at ``(params, x, key)``, compiled once per network."""
    return jax.jit(lambda params, x, key: net.forward(params, x, key=key)[0])


def _walk(layer: Layer, params, x, dy, key, tol: Tolerance,
          trail: str) -> tuple[Location | None, str]:
    """The first wrong sublayer call of ``layer`` in backward order, or None and a note on why
    the layer itself is the location (no wiring, a wiring that does not fit, or — note
    :data:`COMBINES` — every part right on its own)."""
    wiring = wiring_of(layer)
    if wiring is None:
        return None, NO_WIRING
    try:
        calls, gs, mismatch = wired_points(layer)(params, x, key, dy)
    except Exception as e:
        return None, f"checked as one layer: its wiring raised {type(e).__name__}: {e}"
    if not float(mismatch) <= _agree(tol):
        return None, "checked as one layer: its wiring does not reproduce its forward"
    for call, g in reversed(list(zip(calls, gs))):
        i = int(call.index)
        sub = layer.sublayers[i]
        rep = layer_report(sub, call.params, call.x, g, call.key, tol=tol)
        if not rep.ok:
            label = f"{trail}{wiring.part} {i} ({sub.name})"
            found, note = (_walk(sub, call.params, call.x, g, call.key, tol, label + " › ")
                           if sub.sublayers else (None, ""))
            return found or (f"{label}: {wrong_grads(rep)} wrong" + (f" ({note})" if note
                                                                      else ""), rep), ""
    return None, COMBINES


def first_wrong_sublayer(layer: Layer, params, x, dy, key, tol: Tolerance,
                         trail: str = "") -> Location | None:
    """The first sublayer call, in backward order, whose own backward fails at its actual
    input and cotangent (nested combinators followed); None if none does or ``layer`` cannot
    be walked (no wiring)."""
    return _walk(layer, params, x, dy, key, tol, trail)[0]


def locate_layer(layer: Layer, params, x, dy, key, tol: Tolerance,
                 report: GradientReport) -> GradientReport:
    """``report`` (of ``layer`` at this point) with its location when it fails: the first wrong
    sublayer of a combinator, else the layer itself (with a note for a combinator)."""
    if report.ok:
        return report
    found, note = (_walk(layer, params, x, dy, key, tol, "") if layer.sublayers
                   else (None, ""))
    if found is None:
        found = (f"{layer.name}: {wrong_grads(report)} wrong" + (f" ({note})" if note else ""),
                 None)
    return GradientReport(layer.name, report.rows, *found, forward=report.forward)


def locate_in_network(net: Layer, loss, params, x, y, key, tol: Tolerance,
                      penalised: bool) -> Location:
    """Where a network's gradient first goes wrong: the loss, a layer, the penalty, or how the
    parts are combined."""
    # The network's own forward: a combinator need not chain its sublayers (residual adds x).
    y_pred = network_output(net)(params, x, key)
    rep, g = loss_report_and_grad(loss, y_pred, y, tol=tol)
    if not rep.ok:
        return rep.location, rep
    found, note = (_walk(net, params, x, g, key, tol, "") if net.sublayers else (None, ""))
    if found is None and note != COMBINES:  # a plain layer, or a combinator seen as one
        rep = locate_layer(net, params, x, g, key, tol,
                           layer_report(net, params, x, g, key, tol=tol))
        found = None if rep.ok else (rep.location, rep)
    if found:
        return found
    if penalised:
        return ("regularisation: the loss and every layer are right on their own; the "
                "difference is in the penalty term", None)
    return ("gradient function: the loss and every layer are right on their own; they are "
            "combined differently (grad_fn, or a combinator's backward)", None)


__all__ = ["COMBINES", "Location", "NO_WIRING", "first_wrong_sublayer", "locate_in_network",
           "locate_layer", "network_output", "wired_points"]
