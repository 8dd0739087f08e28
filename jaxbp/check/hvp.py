"""Second order: is the hand-derived gradient itself differentiated correctly?

A backward can be right in value and still wrong as a *function*: a ``jax.lax.stop_gradient``
on a term that depends on the params, a cast to an integer, an ``argmax`` where a softmax was
meant. Its values pass every first-order check; what breaks is anything that differentiates
through it — meta-learning, Hessian-vector products for second-order optimisers, implicit
differentiation. ``check_hvp`` compares, along random directions ``v``, three witnesses of the
Hessian-vector product ``H v`` of the objective ``J``:

1. **manual** — ``jax.jvp`` of the hand-derived gradient ``g = bp.backprop(net, loss)``: the
   derivative of the backward as written;
2. **autodiff** — ``jax.jvp`` of ``jax.grad(J)`` (forward over reverse);
3. **finite differences of the manual gradient** — ``(g(θ + t v) − g(θ − t v)) / 2t`` and the two
   one-sided differences, which see the backward's *values* only: a backward right in value but
   blocked by ``stop_gradient`` is caught because its jvp disagrees with both.

Each leaf of ``H v`` gets a row with the verdicts of the first-order check
(:mod:`jaxbp.check.verdicts`), element by element; a failure is located to the loss or to the
first layer, in backward order, whose own backward has a wrong derivative at its actual input
and cotangent (the same three witnesses, with ``(params, x)`` moved along ``v``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp._core import Layer, Loss, split_key
from jaxbp._validate import non_negative, positive_int, positive_number, require_layer, require_loss
from jaxbp.check.localize import network_output
from jaxbp.check.point import in_evaluation, leaf_path
from jaxbp.check.report import GradientReport, merge
from jaxbp.check.verdicts import FAIL, FiniteDiff, compare_leaf
from jaxbp.check.witnesses import cache, is_float, to64
from jaxbp.gradients import backprop, objective

HVP_HINT = ("the backward is right in value but its own derivative is not: a "
            "jax.lax.stop_gradient on a term that depends on the inputs, a cast, an argmax or "
            "a custom rule without a derivative inside the backward")


def _second_order(manual, auto):
    """Jitted ``(primal, aux, tangent, t) -> (g, manual H v, autodiff H v, g(θ+tv), g(θ−tv))``
    for two gradient functions ``(primal, aux) -> pytree shaped like primal``."""

    @jax.jit
    def run(primal, aux, tangent, t):
        g = lambda p: manual(p, aux)  # noqa: E731
        g0, hv_manual = jax.jvp(g, (primal,), (tangent,))
        hv_auto = jax.jvp(lambda p: auto(p, aux), (primal,), (tangent,))[1]
        moved = lambda s: jax.tree_util.tree_map(lambda p, v: p + s * v, primal, tangent)  # noqa: E731
        return g0, hv_manual, hv_auto, g(moved(t)), g(moved(-t))

    return run


@cache(maxsize=32)
def _network_hvp(net, loss, l1, l2, grad_fn, regularize, key):
    kw = {} if key is None else {"key": key}
    j = objective(net, loss, l1=l1, l2=l2, regularize=regularize)
    g = grad_fn or backprop(net, loss, l1=l1, l2=l2, regularize=regularize)
    return _second_order(lambda p, xy: g(p, *xy, **kw)[1],
                         jax.grad(lambda p, xy: j(p, *xy, **kw)))


@cache(maxsize=64)
def _loss_hvp(loss: Loss):
    return _second_order(lambda p, y: loss.grad(p, y), jax.grad(lambda p, y: loss.value(p, y)))


@cache(maxsize=128)
def _layer_hvp(layer: Layer):
    def parts(primal, aux):
        dy, x_static, key = aux
        return primal["params"], primal.get("x", x_static), dy, key

    def manual(primal, aux):
        params, x, dy, key = parts(primal, aux)
        dparams, dx = layer.backward(params, layer.forward(params, x, key=key)[1], dy)
        return {"params": dparams, "x": dx} if "x" in primal else {"params": dparams}

    def auto(primal, aux):
        dy, _, key = aux
        return jax.grad(lambda p: jnp.sum(layer.forward(*parts(p, aux)[:2], key=key)[0] * dy))(
            primal)

    return _second_order(manual, auto)


def _direction(rng: np.random.Generator, primal):
    """A random direction: standard normal, scaled per element by ``max(1, |θ|)``."""
    return jax.tree_util.tree_map(
        lambda p: jax.device_put(rng.standard_normal(np.shape(p)) * np.maximum(1.0, np.abs(p))),
        primal)


def _rows(run, primal, aux, paths, rng, directions, tol, where) -> list[GradientReport]:
    """One report per direction: the three witnesses of ``H v`` compared leaf by leaf."""
    eps = np.finfo(np.float64).eps
    reports = []
    for d in range(directions):
        tangent = _direction(rng, primal)
        g0, m, a, plus, minus = (list(map(np.asarray, jax.tree_util.tree_leaves(w)))
                                 for w in run(primal, aux, tangent, tol["step"]))
        t = tol["step"]
        noise = 64 * eps * max((float(np.max(np.abs(v), initial=0.0)) for v in g0 + plus),
                               default=0.0) / t
        rows = []
        for path, *w in zip(paths, g0, m, a, plus, minus):
            g, hm, ha, gp, gm = w
            fd = FiniteDiff((gp - gm) / (2 * t), (gp - g) / t, (g - gm) / t,
                            np.full(np.shape(g), noise))
            row = compare_leaf(path, hm, ha, fd, rtol=tol["rtol"], fd_rtol=tol["fd_rtol"],
                               where=f"{where}direction {d}")
            rows.append(row if row.status != FAIL else dataclasses.replace(row, hint=HVP_HINT))
        reports.append(GradientReport("", tuple(rows)))
    return reports


def _paths(primal, prefix: str) -> list[str]:
    return [leaf_path(p, prefix) for p, _ in jax.tree_util.tree_leaves_with_path(primal)]


def _layer_second_order(layer, params, x, dy, key, rng, directions, tol) -> GradientReport:
    x_float = is_float(x)
    primal = {"params": params, "x": x} if x_float else {"params": params}
    paths = ["x" if p and getattr(p[0], "key", None) == "x" else
             leaf_path(p[1:], "") for p, _ in jax.tree_util.tree_leaves_with_path(primal)]
    reports = _rows(_layer_hvp(layer), primal, (dy, None if x_float else x, key), paths, rng,
                    directions, tol, "")
    return merge(reports, layer.name, "")


def _locate(net, loss, params, x, y, key, rng, directions, tol):
    """The loss, else the first sublayer in backward order whose backward's derivative is wrong."""
    y_pred = network_output(net)(params, x, key)
    rep = merge(_rows(_loss_hvp(loss), y_pred, y, ["y_pred"], rng, directions,
                      tol, ""), loss.name, "")
    if not rep.ok:
        return f"loss ({loss.name}): second derivative of loss.grad wrong", rep
    g = jax.grad(lambda p: loss.value(p, y))(y_pred)
    subs = net.sublayers or (net,)
    sub_params = params if net.sublayers else (params,)
    keys = split_key(key, len(subs)) if net.sublayers else (key,)
    inputs = [x]
    for sub, p, k in zip(subs[:-1], sub_params, keys):
        inputs.append(sub.forward(p, inputs[-1], key=k)[0])
    for i in reversed(range(len(subs))):
        rep = _layer_second_order(subs[i], sub_params[i], inputs[i], g, keys[i], rng,
                                  directions, tol)
        if not rep.ok:
            wrong = ", ".join(r.path for r in rep.failures)
            return f"layer {i} ({subs[i].name}): derivative of the backward wrong in {wrong}", rep
        if is_float(inputs[i]):
            fwd = lambda x_, i=i: subs[i].forward(sub_params[i], x_, key=keys[i])[0]  # noqa: E731
            g = jax.vjp(fwd, inputs[i])[1](g)[0]
    return ("gradient function: the loss and every layer are right on their own; the "
            "difference is in how they are combined (grad_fn, a combinator or the penalty)", None)


def check_hvp(net: Layer, loss: Loss, params, x, y, *, l1: float = 0.0, l2: float = 0.0,
              regularize=None, grad_fn=None, key=None, state=None, directions: int = 2,
              seed: int = 0,
              localize: bool = True, rtol: float = 1e-7, fd_rtol: float = 1e-5,
              step: float = 1e-5) -> GradientReport:
    """Checks the derivative of a hand-derived gradient: Hessian-vector products ``H v``.

    Along ``directions`` random directions ``v`` (standard normal, scaled by ``max(1, |θ|)``),
    ``jax.jvp`` of the manual gradient (``grad_fn``, default ``bp.backprop(net, loss, l1=, l2=)``)
    is compared with ``jax.jvp(jax.grad(J))`` and with central and one-sided finite differences
    of the manual gradient, ``(g(θ + t v) − g(θ − t v)) / 2t`` with ``t = step``, on every
    element of ``H v``, in float64. The verdicts are those of :func:`jaxbp.check_gradients`.
    On failure the loss and then each layer, in backward order, are checked the same way at
    their actual inputs and cotangents; the first that fails is the location.

    Args:
      net: the network.
      loss: the loss.
      params: the point (float32 is fine: the check runs in float64).
      x: inputs ``(batch, ...)``.
      y: targets.
      l1: L1 coefficient (see ``bp.backprop``; its second derivative is 0 off ``θ = 0``).
      l2: L2 coefficient.
      regularize: which leaves are penalised.
      grad_fn: the manual gradient function ``(params, x, y) -> (value, grads)`` to check.
      key: forward key for stochastic layers (the same mask for every witness).
      state: a network with state's layer state in evaluation mode (as in
        :func:`jaxbp.check_gradients`).
      directions: random directions ``v`` (default 2).
      seed: seed of the directions.
      localize: on failure, find the loss or first layer whose backward's derivative is wrong.
      rtol: tolerance of manual vs autodiff ``H v``, relative to the leaf's largest magnitude.
      fd_rtol: tolerance against the finite-difference interval, relative likewise.
      step: the finite-difference step ``t`` along ``v`` (a gradient's differences are taken
        one order lower than a value's, hence the larger default).

    Returns:
      A :class:`~jaxbp.GradientReport` with one row per parameter leaf of ``H v``.

    Examples:
      >>> import jax, jaxbp as bp
      >>> net = bp.serial(bp.dense(4), bp.tanh(), bp.dense(2))
      >>> params, _ = net.init(jax.random.key(0), (3,))
      >>> x, y = jax.numpy.ones((5, 3)), jax.numpy.zeros((5, 2))
      >>> bp.check_hvp(net, bp.mse(), params, x, y).ok
      True
    """
    where = "check_hvp"
    require_layer(where, net, "net", "bp.serial(...)")
    require_loss(where, loss)
    l1, l2 = (non_negative(where, name, v, f"{name}=1e-4") for name, v in (("l1", l1), ("l2", l2)))
    directions = positive_int(where, "directions", directions, "directions=2")
    tol = {name: positive_number(where, name, v, f"{name}=1e-5")
           for name, v in (("rtol", rtol), ("fd_rtol", fd_rtol), ("step", step))}
    rng = np.random.default_rng(seed)
    with jax.enable_x64(True):
        params, x, y = to64(params), to64(x), to64(y)
        if key is None:
            net = in_evaluation(net, params, state, "float64")
        run = _network_hvp(net, loss, l1, l2, grad_fn, regularize, key)
        prefix = "layers" if net.sublayers else ""
        reports = _rows(run, params, (x, y), _paths(params, prefix), rng, directions, tol, "")
        n = sum(int(np.size(v)) for v in jax.tree_util.tree_leaves(params))
        head = (f"witnesses of H v: jax.jvp of the manual gradient, jax.jvp(jax.grad(J)), "
                f"central differences of the manual gradient along v (float64, step {step:g}); "
                f"rtol {rtol:g}, fd_rtol {fd_rtol:g}; {directions} direction(s), batch "
                f"{x.shape[0]}, {n} parameters")
        report = merge(reports, f"second order of {net.name} + {loss.name}", head)
        if report.ok or not localize:
            return report
        location, local = _locate(net, loss, params, x, y, key, rng, directions, tol)
    return GradientReport(report.subject, report.rows, location, local, head)


__all__ = ["HVP_HINT", "check_hvp"]
