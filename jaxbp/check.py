"""Gradient checking: is a hand-derived backward right — and if not, where, and why?

Three witnesses, all in float64 (x64 is switched on for the check only, inside a
``jax.enable_x64(True)`` context, and the caller's setting is left as it was):

1. **manual** — the hand-derived ``backward`` (or a gradient function such as ``bp.backprop``);
2. **autodiff** — ``jax.vjp`` / ``jax.grad`` of the same forward;
3. **finite differences** — ``(f(θ + h e_i) - f(θ - h e_i)) / 2h`` for every element ``i``, with
   ``h = step · max(1, |θ_i|)``, evaluated ``vmap``-ed in jitted chunks. The one-sided differences
   ``(f(θ + h) - f(θ)) / h`` and ``(f(θ) - f(θ - h)) / h`` bound an interval that contains every
   subgradient when a kink (ReLU at 0, a max tie, ``|w|`` at 0) lies within the step.

For a layer the checked scalar is ``f(params, x) = Σ forward(params, x) · dy`` with a random
cotangent ``dy``, so ``∇f = (dparams, dx)``, exactly what ``backward(params, cache, dy)`` returns.
For a network it is the training objective ``J(params)`` of ``bp.objective``.

Each leaf gets a verdict in words (see ``jaxbp._report``); a failing network is localised to
the first layer, in backward order, whose own ``dx`` or ``dparams`` is wrong; each failing leaf
gets a hint naming the likely slip (see ``jaxbp._diagnose``).

Examples:
  >>> import jaxbp as bp
  >>> report = bp.check_layer(bp.dense(3), (4,))
  >>> report.ok
  True
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp._core import Layer, Loss, check_input_shape, split_key
from jaxbp._diagnose import Context, diagnose
from jaxbp._report import (FAIL, GradientCheckError, GradientReport, LeafCheck,
                           compare_leaf, merge)
from jaxbp._witnesses import Oracle, cache, is_float, oracle, to64, witnesses
from jaxbp._validate import non_negative
from jaxbp.gradients import backprop, objective, penalty_mask

STEP = 1e-6
"""Default finite-difference step, relative: ``h = STEP · max(1, |θ_i|)``."""
RTOL = 1e-8
"""Default tolerance of manual vs autodiff, relative to the largest magnitude in the leaf."""
FD_RTOL = 1e-6
"""Default tolerance of a value vs the finite-difference interval (plus estimated round-off)."""


class _Tol(NamedTuple):
    rtol: float
    fd_rtol: float
    step: float


def _positive(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}={value!r} must be a positive number, e.g. {name}=1e-6.") from None
    if not v > 0:
        raise ValueError(f"{name}={value!r} must be a positive number, e.g. {name}=1e-6.")
    return v


def _tol(rtol, fd_rtol, step) -> _Tol:
    return _Tol(_positive("rtol", rtol), _positive("fd_rtol", fd_rtol), _positive("step", step))


def _settings(tol: _Tol, points: str) -> str:
    return (f"witnesses: manual backward, autodiff (jax.vjp), central finite differences "
            f"(float64, step {tol.step:g}·max(1,|θ|)); rtol {tol.rtol:g}, fd_rtol "
            f"{tol.fd_rtol:g}; {points}")


# --------------------------------------------------------------------------------------
# Single-point checks, shared by the public functions and by localisation.


def _path(path, prefix: str) -> str:
    s = jax.tree_util.keystr(path)
    return prefix + s if prefix else (s[1:] if s.startswith(".") else s or "params")


def _grad_name(path: str) -> str:
    if path == "x":
        return "dx"
    return "d" + path if path.isidentifier() else "dparams" + ("" if path[:1] == "[" else ".") + path


def _rows(paths, manual, auto, fds, tol, where, contexts) -> list[LeafCheck]:
    rows = []
    for path, m, a, fd, ctx in zip(paths, manual, auto, fds, contexts):
        row = compare_leaf(path, m, a, fd, rtol=tol.rtol, fd_rtol=tol.fd_rtol, where=where)
        if row.status == FAIL:
            row = dataclasses.replace(row, hint=diagnose(m, a, ctx))
        rows.append(row)
    return rows


def _structure_row(prefix: str, got, want, where: str) -> LeafCheck:
    return LeafCheck(prefix or "params", (), FAIL,
                     f"manual dparams has structure {jax.tree_util.tree_structure(got)}, "
                     f"params have {jax.tree_util.tree_structure(want)} → return dparams "
                     f"shaped like params", where=where,
                     hint="wrong structure: return the same NamedTuple/tuple as params")


@cache(maxsize=256)
def _layer_oracle(layer: Layer):
    def fn(primal, aux):
        dy, x_static, key = aux
        x = primal["x"] if "x" in primal else x_static
        return jnp.sum(layer.forward(primal["params"], x, key=key)[0] * dy)

    def manual(primal, aux):
        dy, x_static, key = aux
        params, x = primal["params"], primal["x"] if "x" in primal else x_static
        y, cache = layer.forward(params, x, key=key)
        out = layer.backward(params, cache, dy)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(f"{layer.name}.backward must return a pair (dparams, dx), got "
                            f"{type(out).__name__}. Fix: return dparams, dx.")
        return jnp.sum(jnp.abs(y * dy)), out

    return oracle(fn, manual)


def _check_layer_at(layer, params, x, dy, key, *, tol: _Tol, prefix: str, where: str,
                    localize: bool, want_dx: bool = False):
    """The report at one point; with ``want_dx`` also autodiff's ``dx`` (for the layer below)."""
    x_float = is_float(x)
    primal = {"params": params, "x": x} if x_float else {"params": params}
    aux = (dy, None if x_float else x, key)
    try:
        (_, (dparams, dx)), auto, fds = witnesses(_layer_oracle(layer), primal, aux,
                                                   step=tol.step, magnitude=lambda m: m[0])
    except Exception as e:
        e.add_note(f"(raised while running {layer.name}'s forward and backward in the check)")
        raise
    p_leaves = jax.tree_util.tree_leaves_with_path(params)
    n_p = len(p_leaves)
    batch = int(x.shape[0])
    rows = []
    if jax.tree_util.tree_structure(dparams) != jax.tree_util.tree_structure(params):
        rows.append(_structure_row(prefix, dparams, params, where))
    else:
        rows += _rows([_path(p, prefix) for p, _ in p_leaves], jax.tree_util.tree_leaves(dparams),
                      jax.tree_util.tree_leaves(auto["params"]), fds[:n_p], tol, where,
                      [Context(batch=batch)] * n_p)
    if x_float:
        dy_ctx = np.asarray(dy) if np.shape(dy) == np.shape(x) else None
        rows += _rows(["x"], [dx], [auto["x"]], fds[n_p:], tol, where,
                      [Context(batch=batch, dy=dy_ctx)])
    report = GradientReport(layer.name, tuple(rows))
    if want_dx:
        return report, auto.get("x")
    if report.ok or not localize:
        return report
    found = _localize(layer, params, x, dy, key, tol) if layer.sublayers else None
    if found is None:
        found = (f"{layer.name}: {', '.join(_grad_name(r.path) for r in report.failures)} wrong",
                 None)
    return GradientReport(layer.name, tuple(rows), *found)


def _localize(layer: Layer, params, x, dy, key, tol: _Tol, trail: str = ""):
    """The first sublayer, in backward order, whose own backward fails at its actual input."""
    subs = layer.sublayers
    keys = split_key(key, len(subs))
    inputs = _sublayer_inputs(layer)(params, x, keys)
    g = dy  # the cotangent reaching layer i: autodiff's dx of layer i + 1 at its actual input
    for i in reversed(range(len(subs))):
        rep, g_below = _check_layer_at(subs[i], params[i], inputs[i], g, keys[i], tol=tol,
                                       prefix="", where="", localize=False, want_dx=True)
        if not rep.ok:
            label = f"{trail}layer {i} ({subs[i].name})"
            deeper = (_localize(subs[i], params[i], inputs[i], g, keys[i], tol, label + " › ")
                      if subs[i].sublayers else None)
            return deeper or (
                f"{label}: {', '.join(_grad_name(r.path) for r in rep.failures)} wrong", rep)
        g = g_below
    return None


@cache(maxsize=64)
def _sublayer_inputs(layer: Layer):
    """Jitted: the input of each sublayer (and the output last) at ``(params, x)``."""

    @jax.jit
    def run(params, x, keys):
        out = [x]
        for sub, p, k in zip(layer.sublayers, params, keys):
            out.append(sub.forward(p, out[-1], key=k)[0])
        return out

    return run


@cache(maxsize=64)
def _loss_oracle(loss: Loss):
    return oracle(lambda primal, y_true: loss.value(primal["y_pred"], y_true),
                   lambda primal, y_true: loss.grad(primal["y_pred"], y_true))


def _check_loss_at(loss: Loss, y_pred, y_true, *, tol: _Tol, where: str,
                   want_grad: bool = False):
    manual, auto, fds = witnesses(_loss_oracle(loss), {"y_pred": y_pred}, y_true, step=tol.step)
    auto = auto["y_pred"]
    ctx = Context(batch=int(y_pred.shape[0]), n=int(y_pred.size))
    rows = tuple(_rows(["y_pred"], [manual], [auto], fds, tol, where, [ctx]))
    report = GradientReport(loss.name, rows) if all(r.status != FAIL for r in rows) else \
        GradientReport(loss.name, rows, f"loss ({loss.name}): gradient wrong", None)
    return (report, auto) if want_grad else report


# --------------------------------------------------------------------------------------
# Public API.


def _seed(key) -> tuple[int, jax.Array]:
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return int(key), jax.random.key(int(key))
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return int(jax.random.randint(key, (), 0, 2**31 - 1)), key
    raise TypeError(f"key={key!r} must be an int seed or a jax.random.key. Fix: key=0.")


def _sizes(batch_sizes, draws) -> tuple[tuple[int, ...], int]:
    sizes = (batch_sizes,) if isinstance(batch_sizes, int) else tuple(batch_sizes)
    if not sizes or any(isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1
                        for b in sizes):
        raise ValueError(f"batch_sizes={batch_sizes!r} must be positive ints, e.g. (1, 3).")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws={draws!r} must be a positive int, e.g. draws=2.")
    return tuple(int(b) for b in sizes), draws


def _normal(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.standard_normal(shape)


def check_layer(layer: Layer, input_shape=None, *, key=0, params=None, inputs=None,
                batch_sizes: Sequence[int] = (1, 3), draws: int = 2,
                input_fn: Callable | None = None, training: bool = False, rtol: float = RTOL,
                fd_rtol: float = FD_RTOL, step: float = STEP) -> GradientReport:
    """Checks one layer's hand-derived ``backward`` (``dparams`` and ``dx``) at several points.

    At each point — ``draws`` random draws for each batch size, or each of ``inputs`` — params
    come from ``layer.init`` (unless given), ``x`` from ``input_fn`` and the cotangent ``dy`` from
    a standard normal; the three witnesses are compared on ``f = Σ forward(params, x) · dy``.

    Args:
      layer: the :class:`~jaxbp.Layer` to check (a ``serial`` is localised layer by layer).
      input_shape: one example's shape, without the batch axis; not needed with ``inputs``.
      key: an int seed or a ``jax.random.key`` for params, inputs and cotangents.
      params: check at these params instead of fresh ``layer.init`` ones per draw.
      inputs: an array ``(batch, *input_shape)`` or a list of them: check exactly there.
      batch_sizes: batch sizes to draw (default ``(1, 3)``).
      draws: random draws per batch size.
      input_fn: ``(rng: np.random.Generator, shape) -> array`` drawing inputs (default standard
        normal); use it for integer tokens or to place inputs on purpose.
      training: pass a fixed forward ``key`` (stochastic layers such as dropout keep their mask
        identical across the three witnesses).
      rtol: tolerance of manual vs autodiff, relative to the leaf's largest magnitude.
      fd_rtol: tolerance of a value vs the finite-difference interval, relative likewise.
      step: relative finite-difference step.

    Returns:
      A :class:`GradientReport`; ``print`` it for the table, ``.raise_if_failed()`` in tests.
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"check_layer: layer must be a jaxbp Layer, got {type(layer).__name__}. "
                        f"Fix: call the factory, e.g. bp.relu() rather than bp.relu.")
    if inputs is None and input_shape is None:
        raise ValueError("check_layer: give input_shape (without the batch axis), e.g. (4,), "
                         "or explicit inputs=.")
    tol = _tol(rtol, fd_rtol, step)
    sizes, draws = _sizes(batch_sizes, draws)
    seed, init_key = _seed(key)
    rng = np.random.default_rng(seed)
    draw_x = input_fn or _normal
    with jax.enable_x64(True):
        if inputs is not None:
            xs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
            points = [(0, to64(x), f"inputs[{i}]") for i, x in enumerate(xs)]
            input_shape = tuple(points[0][1].shape[1:])
        else:
            input_shape = check_input_shape("check_layer", input_shape)
            points = [(d, to64(draw_x(rng, (b, *input_shape))), f"batch {b}, draw {d}")
                      for d in range(draws) for b in sizes]
        fixed = None if params is None else to64(params)
        reports = []
        for j, (d, x, where) in enumerate(points):
            p = fixed if fixed is not None else to64(
                layer.init(jax.random.fold_in(init_key, d), input_shape)[0])
            fkey = jax.random.fold_in(init_key, 100_000 + j) if training else None
            y = jax.eval_shape(lambda p_, x_: layer.forward(p_, x_, key=fkey)[0], p, x)
            dy = jax.device_put(rng.standard_normal(y.shape))
            reports.append(_check_layer_at(layer, p, x, dy, fkey, tol=tol, where=where,
                                           prefix="layers" if layer.sublayers else "",
                                           localize=True))
    what = (f"{len(points)} explicit input(s)" if inputs is not None else
            f"{len(points)} points: batch {', '.join(map(str, sizes))} × {draws} draw(s)")
    return merge(reports, layer.name, _settings(tol, what))


def check_loss(loss: Loss, pred_shape=None, *, key=0, y_pred=None, y_true=None,
               batch_sizes: Sequence[int] = (1, 3), draws: int = 2,
               pred_fn: Callable | None = None, target_fn: Callable | None = None,
               rtol: float = RTOL, fd_rtol: float = FD_RTOL, step: float = STEP) -> GradientReport:
    """Checks a loss's hand-derived ``grad`` against ``jax.grad`` of its ``value`` and finite
    differences, at ``y_pred``/``y_true`` if given, else at random draws.

    Args:
      loss: the :class:`~jaxbp.Loss`.
      pred_shape: one prediction's shape without the batch axis, e.g. ``(3,)``.
      key: an int seed or a ``jax.random.key``.
      y_pred: explicit predictions ``(batch, *pred_shape)`` (with ``y_true``).
      y_true: explicit targets.
      batch_sizes: batch sizes to draw.
      draws: random draws per batch size.
      pred_fn: ``(rng, shape) -> y_pred`` (default standard normal).
      target_fn: ``(rng, pred_full_shape) -> y_true`` (default standard normal, same shape).
      rtol: see :func:`check_layer`.
      fd_rtol: see :func:`check_layer`.
      step: see :func:`check_layer`.
    """
    if not isinstance(loss, Loss):
        raise TypeError(f"check_loss: loss must be a jaxbp Loss, got {type(loss).__name__}. "
                        f"Fix: call the factory, e.g. bp.mse() rather than bp.mse.")
    tol = _tol(rtol, fd_rtol, step)
    sizes, draws = _sizes(batch_sizes, draws)
    seed, _ = _seed(key)
    rng = np.random.default_rng(seed)
    with jax.enable_x64(True):
        if y_pred is not None:
            points = [(to64(y_pred), to64(y_true), "given y_pred")]
        else:
            shape = check_input_shape("check_loss", pred_shape)
            points = []
            for d in range(draws):
                for b in sizes:
                    p = (pred_fn or _normal)(rng, (b, *shape))
                    points.append((to64(p), to64((target_fn or _normal)(rng, np.shape(p))),
                                   f"batch {b}, draw {d}"))
        reports = [_check_loss_at(loss, p, t, tol=tol, where=w) for p, t, w in points]
    return merge(reports, loss.name, _settings(tol, f"{len(points)} point(s)"))


def check_gradients(net: Layer, loss: Loss, params, x, y, *, l1: float = 0.0, l2: float = 0.0,
                    regularize=None, grad_fn: Callable | None = None, key=None,
                    localize: bool = True, rtol: float = RTOL, fd_rtol: float = FD_RTOL,
                    step: float = STEP) -> GradientReport:
    """Checks a network's hand-derived gradient of ``J = loss(net(params, x), y) + penalty``.

    The manual witness is ``grad_fn(params, x, y)`` — by default ``bp.backprop(net, loss, l1=,
    l2=)`` — compared with ``jax.grad`` of ``bp.objective`` and finite differences of it over
    every parameter. On failure the loss and then each layer, in backward order, are checked
    on their own at their actual inputs and cotangents; the first that fails is the location.

    Args:
      net: the network (a :class:`~jaxbp.Layer`, usually a ``serial``).
      loss: the :class:`~jaxbp.Loss`.
      params: the network's params (float32 is fine: the check runs in float64).
      x: inputs ``(batch, ...)``.
      y: targets.
      l1: L1 coefficient of the objective (see ``bp.backprop``).
      l2: L2 coefficient of the objective.
      regularize: which leaves are penalised (see ``bp.backprop``).
      grad_fn: the manual gradient function ``(params, x, y) -> (value, grads)`` to check.
      key: forward key for stochastic layers (the same for every witness).
      localize: on failure, find the first wrong layer (default True).
      rtol: see :func:`check_layer`.
      fd_rtol: see :func:`check_layer`.
      step: see :func:`check_layer`.
    """
    for arg, v, cls, fix in (("net", net, Layer, "bp.serial(...)"), ("loss", loss, Loss, "bp.mse()")):
        if not isinstance(v, cls):
            raise TypeError(f"check_gradients: {arg} must be a jaxbp {cls.__name__}, got "
                            f"{type(v).__name__}. Fix: pass e.g. {fix}.")
    tol = _tol(rtol, fd_rtol, step)
    l1 = non_negative("check_gradients", "l1", l1, "l1=1e-4")
    l2 = non_negative("check_gradients", "l2", l2, "l2=1e-4")
    # Reused across calls with the same network, loss and options (compiled once per shape).
    net_oracle = _network_oracle(net, loss, l1, l2, grad_fn, regularize, key)
    prefix = "layers" if net.sublayers else ""
    with jax.enable_x64(True):
        params, x, y = to64(params), to64(x), to64(y)
        manual, auto, fds = witnesses(net_oracle, params, (x, y), step=tol.step)
        leaves = jax.tree_util.tree_leaves_with_path(params)
        mask = jax.tree_util.tree_leaves(penalty_mask(params, regularize))
        ctxs = [Context(batch=int(x.shape[0]), param=np.asarray(v), l1=l1 * on, l2=l2 * on)
                for (_, v), on in zip(leaves, mask)]
        if jax.tree_util.tree_structure(manual) != jax.tree_util.tree_structure(params):
            rows = [_structure_row(prefix, manual, params, "")]
        else:
            rows = _rows([_path(p, prefix) for p, _ in leaves], jax.tree_util.tree_leaves(manual),
                         jax.tree_util.tree_leaves(auto), fds, tol, "", ctxs)
        subject = f"{net.name} + {loss.name}" + (f" + penalty(l1={l1:g}, l2={l2:g})"
                                                 if l1 or l2 else "")
        report = GradientReport(subject, tuple(rows), settings=_settings(
            tol, f"batch {x.shape[0]}, {sum(v.size for _, v in leaves)} parameters"))
        if report.ok or not localize:
            return report
        location = _localize_network(net, loss, params, x, y, key, tol, bool(l1 or l2))
    return GradientReport(report.subject, report.rows, *location, settings=report.settings)


@cache(maxsize=32)
def _network_oracle(net, loss, l1, l2, grad_fn, regularize=None, key=None) -> Oracle:
    j = objective(net, loss, l1=l1, l2=l2, regularize=regularize)
    manual_fn = grad_fn or backprop(net, loss, l1=l1, l2=l2, regularize=regularize)
    kw = {} if key is None else {"key": key}
    return oracle(lambda p, aux: j(p, aux[0], aux[1], **kw),
                   lambda p, aux: manual_fn(p, aux[0], aux[1], **kw)[1])


def _localize_network(net, loss, params, x, y, key, tol, penalised):
    if net.sublayers:
        y_pred = _sublayer_inputs(net)(params, x, split_key(key, len(net.sublayers)))[-1]
    else:
        y_pred = jax.jit(lambda p, x: net.forward(p, x, key=key)[0])(params, x)
    rep, g = _check_loss_at(loss, y_pred, y, tol=tol, where="", want_grad=True)
    if not rep.ok:
        return rep.location, rep
    if net.sublayers:
        found = _localize(net, params, x, g, key, tol)
    else:
        rep = _check_layer_at(net, params, x, g, key, tol=tol, prefix="", where="", localize=True)
        found = None if rep.ok else (rep.location, rep)
    if found:
        return found
    if penalised:
        return ("regularisation: the loss and every layer are right on their own; the "
                "difference is in the penalty term", None)
    return ("gradient function: the loss and every layer are right on their own; they are "
            "combined differently (grad_fn, or a combinator's backward)", None)


def assert_gradients_match(net: Layer, loss: Loss, params, x, y, **options) -> GradientReport:
    """:func:`check_gradients` for pytest: raises :class:`GradientCheckError` (an
    ``AssertionError``) with the full report table when any leaf fails; returns the report."""
    return check_gradients(net, loss, params, x, y, **options).raise_if_failed()


__all__ = ["FD_RTOL", "RTOL", "STEP", "GradientCheckError", "GradientReport", "LeafCheck",
           "assert_gradients_match", "check_gradients", "check_layer", "check_loss"]
