"""Localisation: where, in backward order, a wrong gradient first appears.

A failing network is walked as backprop walks it: first the loss (``loss.grad`` at the actual
prediction), then each sublayer of a combinator from the last to the first, each checked on its
own at its actual input and with the autodiff cotangent that reaches it. The first that fails is
the location; nested combinators are followed. The walk assumes the sublayers are chained, as in
``serial`` (and in ``residual``, whose one block sees ``x`` and the cotangent ``dy``).
"""

from __future__ import annotations

import jax

from jaxbp._core import Layer, split_key
from jaxbp.check.point import (Tolerance, layer_report, layer_report_and_dx, loss_report_and_grad,
                                wrong_grads)
from jaxbp.check.report import GradientReport
from jaxbp.check.witnesses import cache

Location = tuple[str, "GradientReport | None"]
"""A location in words, and the report of the located part checked on its own."""


@cache(maxsize=64)
def sublayer_inputs(layer: Layer):
    """Jitted: the input of each sublayer (and the output last) at ``(params, x)``."""

    @jax.jit
    def run(params, x, keys):
        out = [x]
        for sub, p, k in zip(layer.sublayers, params, keys):
            out.append(sub.forward(p, out[-1], key=k)[0])
        return out

    return run


@cache(maxsize=64)
def network_output(net: Layer):
    """Jitted: ``net``'s own prediction at ``(params, x, key)``, compiled once per network."""
    return jax.jit(lambda params, x, key: net.forward(params, x, key=key)[0])


def first_wrong_sublayer(layer: Layer, params, x, dy, key, tol: Tolerance,
                         trail: str = "") -> Location | None:
    """The first sublayer, in backward order, whose own backward fails at its actual input."""
    subs = layer.sublayers
    keys = split_key(key, len(subs))
    inputs = sublayer_inputs(layer)(params, x, keys)
    g = dy  # the cotangent reaching layer i: autodiff's dx of layer i + 1 at its actual input
    for i in reversed(range(len(subs))):
        rep, g_below = layer_report_and_dx(subs[i], params[i], inputs[i], g, keys[i], tol=tol)
        if not rep.ok:
            label = f"{trail}layer {i} ({subs[i].name})"
            deeper = (first_wrong_sublayer(subs[i], params[i], inputs[i], g, keys[i], tol,
                                           label + " › ") if subs[i].sublayers else None)
            return deeper or (f"{label}: {wrong_grads(rep)} wrong", rep)
        g = g_below
    return None


def locate_layer(layer: Layer, params, x, dy, key, tol: Tolerance,
                 report: GradientReport) -> GradientReport:
    """``report`` (of ``layer`` at this point) with its location when it fails: the first wrong
    sublayer of a ``serial``, else the layer itself."""
    if report.ok:
        return report
    found = first_wrong_sublayer(layer, params, x, dy, key, tol) if layer.sublayers else None
    if found is None:
        found = (f"{layer.name}: {wrong_grads(report)} wrong", None)
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
    if net.sublayers:
        found = first_wrong_sublayer(net, params, x, g, key, tol)
    else:
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


__all__ = ["Location", "first_wrong_sublayer", "locate_in_network", "locate_layer",
           "network_output", "sublayer_inputs"]
