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

Each leaf gets a verdict in words (see :mod:`jaxbp.check.verdicts`); a failing network is
localised to the first layer, in backward order, whose own ``dx`` or ``dparams`` is wrong; each
failing leaf gets a hint naming the likely slip (:mod:`jaxbp.check.diagnose`). This module draws
the points and merges their reports; one point is checked by :mod:`jaxbp.check.point`, a failure
located by :mod:`jaxbp.check.localize`, the witnesses computed by :mod:`jaxbp.check.witnesses`.

Examples:
  >>> import jaxbp as bp
  >>> report = bp.check_layer(bp.dense(3), (4,))
  >>> report.ok
  True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp._core import Layer, Loss, check_input_shape, check_input_shapes, is_shape_tuple
from jaxbp.check.custom import check_jvp, check_vjp
from jaxbp.check.diagnose import Context
from jaxbp.check.hvp import check_hvp
from jaxbp.check.localize import locate_in_network, locate_layer
from jaxbp.check.point import (FD_RTOL, RTOL, STEP, in_evaluation, layer_report, loss_report,
                               param_rows, settings, tolerance, with_forward)
from jaxbp.check.report import GradientCheckError, GradientReport, LeafCheck, merge
from jaxbp._validate import fail, non_negative, positive_int, require_layer, require_loss
from jaxbp.check.witnesses import (FULL_FD_MAX, Oracle, cache, cast, oracle, precision, to64,
                                   witnesses)
from jaxbp.gradients import backprop, objective, penalty_mask

def _seed(key) -> tuple[int, jax.Array]:
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return int(key), jax.random.key(int(key))
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return int(jax.random.randint(key, (), 0, 2**31 - 1)), key
    raise TypeError(f"key={key!r} must be an int seed or a jax.random.key. Fix: key=0.")


def _sizes(where: str, batch_sizes, draws) -> tuple[tuple[int, ...], int]:
    sizes = (batch_sizes,) if isinstance(batch_sizes, int) else tuple(batch_sizes)
    if not sizes or any(isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1
                        for b in sizes):
        fail(where, "batch_sizes", batch_sizes, "positive ints", "batch_sizes=(1, 3)")
    return tuple(int(b) for b in sizes), positive_int(where, "draws", draws, "draws=2")


def _normal(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.standard_normal(shape)


def check_layer(layer: Layer, input_shape=None, *, key=0, params=None, inputs=None,
                batch_sizes: Sequence[int] = (1, 3), draws: int = 2,
                input_fn: Callable | None = None, training: bool = False, state=None,
                rtol: float | None = None, fd_rtol: float | None = None,
                step: float | None = None, fd: str = "auto",
                dtype: str = "float64") -> GradientReport:
    """Checks one layer's hand-derived ``backward`` (``dparams`` and ``dx``) at several points.

    At each point — ``draws`` random draws for each batch size, or each of ``inputs`` — params
    come from ``layer.init`` (unless given), ``x`` from ``input_fn`` and the cotangent ``dy`` from
    a standard normal; the three witnesses are compared on ``f = Σ forward(params, x) · dy``.

    Args:
      layer: the :class:`~jaxbp.Layer` to check (a ``serial`` is localised layer by layer).
      input_shape: one example's shape, without the batch axis (a tuple of shapes for a layer
        whose input is a tuple, e.g. ``((3,), (3,))`` for ``add``); not needed with ``inputs``.
      key: an int seed or a ``jax.random.key`` for params, inputs and cotangents.
      params: check at these params instead of fresh ``layer.init`` ones per draw.
      inputs: an array ``(batch, *input_shape)`` (for a tuple input, a tuple of arrays) or a
        list of them: check exactly there.
      batch_sizes: batch sizes to draw (default ``(1, 3)``).
      draws: random draws per batch size.
      input_fn: ``(rng: np.random.Generator, shape) -> array`` drawing inputs (default standard
        normal); use it for integer tokens or to place inputs on purpose.
      training: pass a fixed forward ``key`` (stochastic layers such as dropout keep their mask
        identical across the three witnesses; batch norm normalises with the batch's
        statistics, and its backward's paths through them are checked).
      state: for a layer with state (batch norm) checked in evaluation mode (``training``
        False): the state its forward uses; default the layer's initial state
        (:func:`jaxbp.init_layer_state`).
      rtol: tolerance of manual vs autodiff, relative to the leaf's largest magnitude.
      fd_rtol: tolerance of a value vs the finite-difference interval, relative likewise.
      step: relative finite-difference step.
      fd: where finite differences are taken: ``"full"`` every element; ``"sampled"`` a few
        elements (the worst manual-vs-autodiff disagreements, the largest gradients, random
        ones) and random directional derivatives per leaf, manual vs autodiff still on every
        element; ``"auto"`` (default) full up to ``FULL_FD_MAX`` elements, sampled above.

    Returns:
      A :class:`GradientReport`; ``print`` it for the table, ``.raise_if_failed()`` in tests.
    """
    require_layer("check_layer", layer)
    if inputs is None and input_shape is None:
        raise ValueError("check_layer: input_shape=None and no inputs= to check at. Fix: give "
                         "input_shape (without the batch axis), e.g. (4,), or explicit inputs=.")
    tol = tolerance("check_layer", rtol, fd_rtol, step, fd, dtype)
    sizes, draws = _sizes("check_layer", batch_sizes, draws)
    seed, init_key = _seed(key)
    rng = np.random.default_rng(seed)
    draw_x = input_fn or _normal
    with precision(tol.dtype):
        if inputs is not None:
            xs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
            points = [(0, cast(x, tol.dtype), f"inputs[{i}]") for i, x in enumerate(xs)]
            input_shape = _example_shape(points[0][1])
        else:
            input_shape = check_input_shapes("check_layer", input_shape)
            points = [(d, cast(_draw(draw_x, rng, b, input_shape), tol.dtype),
                       f"batch {b}, draw {d}") for d in range(draws) for b in sizes]
        fixed = None if params is None else cast(params, tol.dtype)
        reports = []
        for j, (d, x, where) in enumerate(points):
            p = fixed if fixed is not None else cast(
                layer.init(jax.random.fold_in(init_key, d), input_shape)[0], tol.dtype)
            fkey = jax.random.fold_in(init_key, 100_000 + j) if training else None
            lay = layer if training else in_evaluation(layer, p, state, tol.dtype)
            y = jax.eval_shape(lambda p_, x_, k_=fkey, f=lay.forward: f(p_, x_, key=k_)[0], p, x)
            dy = cast(jax.tree_util.tree_map(lambda a: rng.standard_normal(a.shape), y),
                      tol.dtype)
            rep = layer_report(lay, p, x, dy, fkey, tol=tol, where=where,
                               prefix="layers" if layer.sublayers else "")
            reports.append(locate_layer(lay, p, x, dy, fkey, tol, rep))
    what = (f"{len(points)} explicit input(s)" if inputs is not None else
            f"{len(points)} points: batch {', '.join(map(str, sizes))} × {draws} draw(s)")
    return merge(reports, layer.name, settings(tol, what, max(
        sum(v.size for v in jax.tree_util.tree_leaves((x, layer.init(
            jax.random.key(0), input_shape)[0] if fixed is None else fixed)))
        for _, x, _ in points)))


def _draw(draw_x: Callable, rng: np.random.Generator, batch: int, shape):
    """A batch of ``batch`` inputs of ``shape`` (a tuple of them for a tuple of shapes)."""
    if is_shape_tuple(shape):
        return tuple(_draw(draw_x, rng, batch, s) for s in shape)
    return draw_x(rng, (batch, *shape))


def _example_shape(x):
    """One example's shape of the input ``x`` (a tuple of shapes for a tuple input)."""
    if isinstance(x, (tuple, list)):
        return tuple(_example_shape(v) for v in x)
    return tuple(x.shape[1:])


def check_loss(loss: Loss, pred_shape=None, *, key=0, y_pred=None, y_true=None,
               batch_sizes: Sequence[int] = (1, 3), draws: int = 2,
               pred_fn: Callable | None = None, target_fn: Callable | None = None,
               rtol: float | None = None, fd_rtol: float | None = None,
               step: float | None = None, fd: str = "auto",
               dtype: str = "float64") -> GradientReport:
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
      fd: see :func:`check_layer`.
    """
    require_loss("check_loss", loss)
    tol = tolerance("check_loss", rtol, fd_rtol, step, fd, dtype)
    sizes, draws = _sizes("check_loss", batch_sizes, draws)
    seed, _ = _seed(key)
    rng = np.random.default_rng(seed)
    with precision(tol.dtype):
        if y_pred is not None:
            points = [(cast(y_pred, tol.dtype), cast(y_true, tol.dtype), "given y_pred")]
        else:
            shape = check_input_shape("check_loss", pred_shape)
            points = []
            for d in range(draws):
                for b in sizes:
                    p = (pred_fn or _normal)(rng, (b, *shape))
                    t = (target_fn or _normal)(rng, np.shape(p))
                    points.append((cast(p, tol.dtype), cast(t, tol.dtype),
                                   f"batch {b}, draw {d}"))
        reports = [loss_report(loss, p, t, tol=tol, where=w) for p, t, w in points]
    return merge(reports, loss.name, settings(tol, f"{len(points)} point(s)",
                                              max(p.size for p, _, _ in points)))


def check_gradients(net: Layer, loss: Loss, params, x, y, *, l1: float = 0.0, l2: float = 0.0,
                    regularize=None, grad_fn: Callable | None = None, key=None,
                    state=None, localize: bool = True, rtol: float | None = None,
                    fd_rtol: float | None = None, step: float | None = None, fd: str = "auto",
                    dtype: str = "float64") -> GradientReport:
    """Checks a network's hand-derived gradient of ``J = loss(net(params, x), y) + penalty``.

    The manual witness is ``grad_fn(params, x, y)`` — by default ``bp.backprop(net, loss, l1=,
    l2=)`` — compared with ``jax.grad`` of ``bp.objective`` on every parameter, and with finite
    differences of it over every parameter (``fd="full"``, the default up to ``FULL_FD_MAX``
    parameters) or at sampled elements and random directions (``fd="sampled"``). On failure the
    loss and then each layer, in backward order, are checked on their own at their actual inputs
    and cotangents; the first that fails is the location.

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
      key: forward key for stochastic layers (the same for every witness); with it batch
        norm runs in training mode (batch statistics).
      state: for a network with state checked in evaluation mode (``key=None``): the layer
        state its forward uses (default :func:`jaxbp.init_layer_state`).
      localize: on failure, find the first wrong layer (default True).
      rtol: see :func:`check_layer`.
      fd_rtol: see :func:`check_layer`.
      step: see :func:`check_layer`.
      fd: see :func:`check_layer`.
    """
    require_layer("check_gradients", net, "net", "bp.serial(...)")
    require_loss("check_gradients", loss)
    tol = tolerance("check_gradients", rtol, fd_rtol, step, fd, dtype)
    l1 = non_negative("check_gradients", "l1", l1, "l1=1e-4")
    l2 = non_negative("check_gradients", "l2", l2, "l2=1e-4")
    if key is None:
        net = in_evaluation(net, params, state, tol.dtype)
    # Reused across calls with the same network, loss and options (compiled once per shape).
    net_oracle = _network_oracle(net, loss, l1, l2, grad_fn, regularize, key)
    prefix = "layers" if net.sublayers else ""
    with precision(tol.dtype):
        params, x, y = (cast(v, tol.dtype) for v in (params, x, y))
        manual, auto, fds = witnesses(net_oracle, params, (x, y), step=tol.step, fd=tol.fd)
        leaves = jax.tree_util.tree_leaves_with_path(params)
        mask = jax.tree_util.tree_leaves(penalty_mask(params, regularize))
        ctxs = [Context(batch=int(x.shape[0]), param=np.asarray(v), l1=l1 * on, l2=l2 * on)
                for (_, v), on in zip(leaves, mask)]
        rows, forward = with_forward(
            lambda trust_fd: param_rows(prefix, manual, auto, params, fds, tol, "", ctxs,
                                        trust_fd), net_oracle, params, (x, y))
        subject = f"{net.name} + {loss.name}" + (f" + penalty(l1={l1:g}, l2={l2:g})"
                                                 if l1 or l2 else "")
        n = sum(v.size for _, v in leaves)
        report = GradientReport(subject, tuple(rows), settings=settings(
            tol, f"batch {x.shape[0]}, {n} parameters", n), forward=forward)
        if report.ok or not localize:
            return report
        location = locate_in_network(net, loss, params, x, y, key, tol, bool(l1 or l2))
    return GradientReport(report.subject, report.rows, *location, settings=report.settings,
                          forward=forward)


@cache(maxsize=32)
def _network_oracle(net, loss, l1, l2, grad_fn, regularize=None, key=None) -> Oracle:
    j = objective(net, loss, l1=l1, l2=l2, regularize=regularize)
    manual_fn = grad_fn or backprop(net, loss, l1=l1, l2=l2, regularize=regularize)
    kw = {} if key is None else {"key": key}
    return oracle(lambda p, aux: j(p, aux[0], aux[1], **kw),
                  lambda p, aux: manual_fn(p, aux[0], aux[1], **kw)[1])


def backprop_vs_autodiff(net: Layer, loss: Loss, params, x, y, *, l1: float = 0.0,
                         l2: float = 0.0, key=None, state=None) -> float:
    """The quick half of :func:`check_gradients`: manual against autodiff only, no finite
    differences, so it costs one backward of each whatever the size of the network.

    Returns the largest ``max |manual - autodiff| / scale`` over the parameter leaves, in
    float64 (about 1e-16 for a right derivation), with ``scale = max(max |autodiff leaf|,
    1e-4 · the largest |autodiff| of any leaf)``: a leaf whose true gradient is zero (the bias
    of a layer that feeds batch norm, which subtracts it again) holds only round-off, which
    is measured at the scale of the gradients it comes from. ``jaxbp train`` runs it before
    training.
    ``key`` and ``state`` as in :func:`check_gradients`.
    """
    require_layer("backprop_vs_autodiff", net, "net", "bp.serial(...)")
    require_loss("backprop_vs_autodiff", loss)
    l1 = non_negative("backprop_vs_autodiff", "l1", l1, "l1=1e-4")
    l2 = non_negative("backprop_vs_autodiff", "l2", l2, "l2=1e-4")
    if key is None:
        net = in_evaluation(net, params, state, "float64")
    net_oracle = _network_oracle(net, loss, l1, l2, None, None, key)
    with jax.enable_x64(True):
        manual, _, auto = net_oracle.manual_and_autodiff(to64(params), (to64(x), to64(y)))
        pairs = [(np.asarray(m), np.asarray(a)) for m, a in zip(
            jax.tree_util.tree_leaves(manual), jax.tree_util.tree_leaves(auto))]
        largest = max((float(np.max(np.abs(a), initial=0.0)) for _, a in pairs), default=0.0)
        return max((float(np.max(np.abs(m - a), initial=0.0))
                    / max(float(np.max(np.abs(a), initial=0.0)), 1e-4 * largest, 1e-300)
                    for m, a in pairs), default=0.0)


def assert_gradients_match(net: Layer, loss: Loss, params, x, y, **options) -> GradientReport:
    """:func:`check_gradients` for pytest: raises :class:`GradientCheckError` (an
    ``AssertionError``) with the full report table when any leaf fails; returns the report."""
    return check_gradients(net, loss, params, x, y, **options).raise_if_failed()


__all__ = ["FD_RTOL", "FULL_FD_MAX", "RTOL", "STEP", "GradientCheckError", "GradientReport",
           "LeafCheck", "assert_gradients_match", "backprop_vs_autodiff", "check_gradients",
           "check_hvp", "check_jvp", "check_layer", "check_loss", "check_vjp"]
