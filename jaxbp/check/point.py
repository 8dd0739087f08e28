"""One layer or loss checked at one point: the three witnesses compared leaf by leaf.

Shared by the public checks (``jaxbp.check``) and by localisation (``jaxbp.check.localize``). For a
layer the checked scalar is ``f(params, x) = Σ forward(params, x) · dy``, so ``∇f = (dparams,
dx)``; for a loss it is ``loss.value(y_pred, y_true)``. Each failing leaf gets a hint
(``jaxbp.check.diagnose``). The compiled oracles are cached per layer / loss object.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp._core import Layer, Loss, has_state, init_layer_state, same_treedef, with_state
from jaxbp.check.diagnose import Context, diagnose
from jaxbp.check.report import GradientReport
from jaxbp.check.rules import ForwardInfo, inspect_function
from jaxbp.check.verdicts import FAIL, SHARED, LeafCheck, compare_leaf
from jaxbp._validate import one_of, positive_number
from jaxbp.check.witnesses import (FD_MODES, FULL_FD_MAX, Oracle, cache, cast, float_dtype,
                                   is_float, oracle, witnesses)


RTOL = 1e-8
"""Default tolerance of manual vs autodiff in float64, relative to the leaf's largest magnitude."""
FD_RTOL = 1e-6
"""Default tolerance of a value vs the finite-difference interval in float64 (plus round-off)."""
STEP = 1e-6
"""Default finite-difference step in float64, relative: ``h = STEP · max(1, |θ_i|)``."""
DTYPES = ("float64", "float32", "bfloat16", "float16")
"""The dtypes a check can compute in."""


class Tolerance(NamedTuple):
    """The tolerances, finite-difference step and dtype of one check."""

    rtol: float
    fd_rtol: float
    step: float
    fd: str = "auto"
    dtype: str = "float64"


def derived(dtype: str) -> tuple[float, float, float]:
    """Default ``(rtol, fd_rtol, step)`` for ``dtype``, scaled from the float64 defaults by its
    epsilon: ``rtol ∝ √eps`` (round-off of two orders of summation), ``fd_rtol`` and ``step ∝
    eps^(1/3)`` (the step that balances a central difference's truncation, ``h²``, against its
    round-off, ``eps / h``). float32: 2.3e-4, 8.1e-4, 8.1e-4; bfloat16: 0.059, 0.033, 0.033."""
    ratio = float(jnp.finfo(dtype).eps) / float(np.finfo(np.float64).eps)
    return RTOL * ratio ** 0.5, FD_RTOL * ratio ** (1 / 3), STEP * ratio ** (1 / 3)


def tolerance(where: str, rtol, fd_rtol, step, fd="auto", dtype="float64") -> Tolerance:
    """Validated :class:`Tolerance` (each a positive number, or None for the default derived
    from ``dtype``'s epsilon; ``fd`` one of ``FD_MODES``; ``dtype`` one of ``DTYPES``)."""
    name = jnp.dtype(dtype).name if not isinstance(dtype, str) else dtype
    dtype = one_of(where, "dtype", name, DTYPES, "a floating dtype to check in")
    given = (("rtol", rtol), ("fd_rtol", fd_rtol), ("step", step))
    r, f, s = (positive_number(where, n, default if v is None else v, f"{n}=1e-6")
               for (n, v), default in zip(given, derived(dtype)))
    return Tolerance(r, f, s, one_of(where, "fd", fd, FD_MODES, "a finite-difference mode"),
                     dtype)


def settings(tol: Tolerance, points: str, elements: int | None = None) -> str:
    """The header line of a report: witnesses, step, tolerances and the points checked (and,
    given the number of ``elements`` checked at a time, whether differences were sampled)."""
    sampled = tol.fd == "sampled" or (tol.fd == "auto" and elements is not None
                                      and elements > FULL_FD_MAX)
    how = ("at the worst, largest and random elements and along random directions of each "
           "leaf (sampled: manual vs autodiff on every element)" if sampled else "")
    narrow = (f"; computed in {tol.dtype}, tolerances from its epsilon "
              f"{float(jnp.finfo(tol.dtype).eps):.3g} (float64 is the exact default)"
              if tol.dtype != "float64" else "")
    return (f"witnesses: manual backward, autodiff (jax.vjp), central finite differences "
            f"({tol.dtype}, step {tol.step:g}·max(1,|θ|)){' ' + how if how else ''}; rtol "
            f"{tol.rtol:g}, fd_rtol {tol.fd_rtol:g}{narrow}; {points}")


def leaf_path(path, prefix: str) -> str:
    """A readable leaf path: ``layers[2].w`` under ``prefix="layers"``, ``w`` without one."""
    s = jax.tree_util.keystr(path)
    return prefix + s if prefix else (s[1:] if s.startswith(".") else s or "params")


def grad_name(path: str) -> str:
    """The gradient's name for a leaf path: ``x`` → ``dx``, ``x[1]`` → ``dx[1]`` (a tuple
    input), ``gamma`` → ``dgamma``."""
    if path == "x" or path.startswith("x["):
        return "d" + path
    if path.isidentifier():
        return "d" + path
    return "dparams" + ("" if path[:1] == "[" else ".") + path


def wrong_grads(report: GradientReport) -> str:
    """The failing gradients of ``report``, e.g. ``"dw, dx"``."""
    return ", ".join(grad_name(r.path) for r in report.failures)


def rows(paths, manual, auto, fds, tol: Tolerance, where: str, contexts,
         trust_fd: bool = True) -> list[LeafCheck]:
    """One compared row per leaf; a failing row gets its diagnosis hint."""
    out = []
    for path, m, a, fd, ctx in zip(paths, manual, auto, fds, contexts):
        row = compare_leaf(path, m, a, fd, rtol=tol.rtol, fd_rtol=tol.fd_rtol, where=where,
                           trust_fd=trust_fd, narrow=tol.dtype != "float64")
        if row.status == FAIL:
            row = dataclasses.replace(row, hint=_hint(row, m, a, fd, ctx))
        out.append(row)
    return out


SHARED_HINT = ("manual and autodiff share the error: a custom_vjp/custom_jvp rule the forward "
               "calls (named under 'forward:') is the likely culprit — check it on its own with "
               "bp.check_vjp / bp.check_jvp")


def _hint(row: LeafCheck, manual, auto, fd, ctx: Context) -> str:
    """The diagnosis against autodiff — or, when manual and autodiff agree against finite
    differences, against the finite differences (where every element has them)."""
    if not row.verdict.endswith(SHARED):
        return diagnose(manual, auto, ctx)
    if fd.checked is not None:
        return SHARED_HINT
    return f"{SHARED_HINT}; against finite differences: {diagnose(manual, fd.central, ctx)}"


def with_forward(compute, oracle_: Oracle, primal, aux) -> tuple[list[LeafCheck],
                                                                 ForwardInfo | None]:
    """``compute(trust_fd)`` → rows; when a row's verdict is :data:`~jaxbp.check.verdicts.SHARED`
    (manual and autodiff agree against finite differences), the checked function's jaxpr is
    walked for the custom rules autodiff runs (returned for the report); if it computes in a
    dtype narrower than the check's own (float64, or the ``dtype=`` checked in) the rows are
    recomputed with that rule off (a warning)."""
    out = compute(True)
    if not any(r.verdict.endswith(SHARED) for r in out):
        return out, None
    info = inspect_function(oracle_.fn, primal, aux)
    width = float_dtype(jax.tree_util.tree_leaves(primal)).itemsize
    narrower = any(jnp.dtype(d).itemsize < width for d in info.narrow_dtypes)
    return (compute(False) if narrower else out), info


def structure_row(prefix: str, got, want, where: str) -> LeafCheck:
    """The failing row of a manual gradient whose pytree structure differs from the params'."""
    return LeafCheck(prefix or "params", (), FAIL,
                     f"manual dparams has structure {jax.tree_util.tree_structure(got)}, "
                     f"params have {jax.tree_util.tree_structure(want)} → return dparams "
                     f"shaped like params", where=where,
                     hint="wrong structure: return the same NamedTuple/tuple as params")


def param_rows(prefix: str, manual, auto, params, fds, tol: Tolerance, where: str,
               contexts, trust_fd: bool = True) -> list[LeafCheck]:
    """The rows of every parameter leaf, or one structure row if ``manual`` is shaped wrong."""
    if not same_treedef(jax.tree_util.tree_structure(manual),
                        jax.tree_util.tree_structure(params)):
        return [structure_row(prefix, manual, params, where)]
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return rows([leaf_path(p, prefix) for p, _ in leaves], jax.tree_util.tree_leaves(manual),
                jax.tree_util.tree_leaves(auto), fds, tol, where, contexts, trust_fd)


def _dot(y, dy, f=lambda a: a):
    """``Σ f(y · dy)`` — over every leaf when the output is a tuple (a fan-out, branches)."""
    if isinstance(y, (tuple, list)):
        return sum(jnp.sum(f(a * b)) for a, b in zip(jax.tree_util.tree_leaves(y),
                                                     jax.tree_util.tree_leaves(dy)))
    return jnp.sum(f(y * dy))


def _is_float_input(x) -> bool:
    """Whether ``x`` (an array or a tuple of arrays) is differentiated: every leaf floating."""
    leaves = jax.tree_util.tree_leaves(x)
    return bool(leaves) and all(is_float(v) for v in leaves)


def in_evaluation(net: Layer, params, state, dtype) -> Layer:
    """``net`` as checked in evaluation mode (``key=None``): a network with state bound to
    ``state`` (its initial state when ``None``, see :func:`jaxbp._core.with_state`) in the
    check's ``dtype``; any other network as it is."""
    if not has_state(net):
        return net
    return with_state(net, cast(init_layer_state(net, params) if state is None else state,
                                dtype))


@cache(maxsize=256)
def _layer_oracle(layer: Layer):
    def fn(primal, aux):
        dy, x_static, key = aux
        x = primal.get("x", x_static)
        return _dot(layer.forward(primal["params"], x, key=key)[0], dy)

    def manual(primal, aux):
        dy, x_static, key = aux
        params, x = primal["params"], primal.get("x", x_static)
        y, cache = layer.forward(params, x, key=key)
        out = layer.backward(params, cache, dy)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(f"{layer.name}.backward must return a pair (dparams, dx), got "
                            f"{type(out).__name__}. Fix: return dparams, dx.")
        return _dot(y, dy, jnp.abs), out

    return oracle(fn, manual)


def layer_report_and_dx(layer: Layer, params, x, dy, key, *, tol: Tolerance, prefix: str = "",
                        where: str = "") -> tuple[GradientReport, jax.Array | None]:
    """The report of ``layer`` at ``(params, x)`` along ``dy`` (no location), and autodiff's
    ``dx`` there — the cotangent reaching the layer below (None for integer inputs)."""
    x_float = _is_float_input(x)
    primal = {"params": params, "x": x} if x_float else {"params": params}
    aux = (dy, None if x_float else x, key)
    layer_oracle = _layer_oracle(layer)
    try:
        (_, (dparams, dx)), auto, fds = witnesses(
            layer_oracle, primal, aux, step=tol.step, magnitude=lambda m: m[0], fd=tol.fd,
            grads=lambda m: jax.tree_util.tree_leaves(m[1][0]) + (
                jax.tree_util.tree_leaves(m[1][1]) if x_float else []))
    except Exception as e:
        e.add_note(f"(raised while running {layer.name}'s forward and backward in the check)")
        raise
    n_p = len(jax.tree_util.tree_leaves(params))
    batch = int(jax.tree_util.tree_leaves(x)[0].shape[0])
    dy_ctx = (np.asarray(dy) if x_float and not isinstance(x, (tuple, list))
              and np.shape(dy) == np.shape(x) else None)
    paths = (np.stack([np.asarray(d) for d in dy]) if x_float and not isinstance(x, (tuple, list))
             and isinstance(dy, (tuple, list)) and all(np.shape(d) == np.shape(x) for d in dy)
             else None)  # a fan-out's: one cotangent per path, each shaped like x

    def compute(trust_fd):
        out = param_rows(prefix, dparams, auto["params"], params, fds[:n_p], tol, where,
                         [Context(batch=batch)] * n_p, trust_fd)
        if not x_float:
            return out
        if not isinstance(x, (tuple, list)):
            return out + rows(["x"], [dx], [auto["x"]], fds[n_p:], tol, where,
                              [Context(batch=batch, dy=dy_ctx, paths=paths)], trust_fd)
        return out + _tuple_x_rows(dx, auto["x"], x, dy, fds[n_p:], tol, where, batch, trust_fd)

    out, forward = with_forward(compute, layer_oracle, primal, aux)
    return GradientReport(layer.name, tuple(out), forward=forward), auto.get("x")


def _tuple_x_rows(dx, auto, x, dy, fds, tol: Tolerance, where: str, batch: int,
                  trust_fd: bool) -> list[LeafCheck]:
    """The rows ``x[0]``, ``x[1]``, ... of a tuple input, or one structure row when the manual
    ``dx`` is not shaped like ``x``."""
    tu = jax.tree_util
    if not same_treedef(tu.tree_structure(dx), tu.tree_structure(x)):
        return [dataclasses.replace(
            structure_row("x", dx, x, where),
            verdict=f"manual dx has structure {tu.tree_structure(dx)}, x has "
                    f"{tu.tree_structure(x)} → return dx shaped like x",
            hint="wrong structure: dx has the structure of x (a tuple for a tuple input)")]
    dys = tu.tree_leaves(dy) if isinstance(dy, (tuple, list)) else [dy] * len(x)
    ctxs = [Context(batch=batch, dy=np.asarray(d) if np.shape(d) == np.shape(v) else None)
            for d, v in zip(dys, tu.tree_leaves(x))]
    paths = ["x" + tu.keystr(p) for p, _ in tu.tree_leaves_with_path(x)]
    return rows(paths, tu.tree_leaves(dx), tu.tree_leaves(auto), fds, tol, where, ctxs, trust_fd)


def layer_report(layer: Layer, params, x, dy, key, *, tol: Tolerance, prefix: str = "",
                 where: str = "") -> GradientReport:
    """The report of ``layer`` at ``(params, x)`` along ``dy``, without a location."""
    return layer_report_and_dx(layer, params, x, dy, key, tol=tol, prefix=prefix, where=where)[0]


@cache(maxsize=64)
def _loss_oracle(loss: Loss):
    return oracle(lambda primal, y_true: loss.value(primal["y_pred"], y_true),
                  lambda primal, y_true: loss.grad(primal["y_pred"], y_true))


def loss_report_and_grad(loss: Loss, y_pred, y_true, *, tol: Tolerance,
                         where: str = "") -> tuple[GradientReport, jax.Array]:
    """The report of ``loss.grad`` at ``(y_pred, y_true)`` (located at the loss when it fails),
    and autodiff's ``dL/dy_pred`` there — the cotangent reaching the network's last layer."""
    loss_oracle, primal = _loss_oracle(loss), {"y_pred": y_pred}
    manual, auto, fds = witnesses(loss_oracle, primal, y_true, step=tol.step, fd=tol.fd)
    auto = auto["y_pred"]
    ctx = Context(batch=int(y_pred.shape[0]), n=int(y_pred.size))
    out, forward = with_forward(lambda trust_fd: rows(["y_pred"], [manual], [auto], fds, tol,
                                                      where, [ctx], trust_fd),
                                loss_oracle, primal, y_true)
    report = GradientReport(loss.name, tuple(out), forward=forward)
    if not report.ok:
        report = GradientReport(loss.name, report.rows, f"loss ({loss.name}): gradient wrong",
                                None, forward=forward)
    return report, auto


def loss_report(loss: Loss, y_pred, y_true, *, tol: Tolerance, where: str = "") -> GradientReport:
    """The report of ``loss.grad`` at ``(y_pred, y_true)``."""
    return loss_report_and_grad(loss, y_pred, y_true, tol=tol, where=where)[0]


__all__ = ["DTYPES", "FD_RTOL", "RTOL", "STEP", "Tolerance", "derived", "grad_name",
           "layer_report", "layer_report_and_dx", "leaf_path", "loss_report",
           "loss_report_and_grad", "param_rows", "rows", "settings",
           "SHARED_HINT", "structure_row", "tolerance", "with_forward", "wrong_grads"]
