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

from jaxbp._core import Layer, Loss
from jaxbp.check.diagnose import Context, diagnose
from jaxbp.check.report import GradientReport
from jaxbp.check.rules import ForwardInfo, inspect_function
from jaxbp.check.verdicts import FAIL, SHARED, LeafCheck, compare_leaf
from jaxbp._validate import one_of, positive_number
from jaxbp.check.witnesses import FD_MODES, FULL_FD_MAX, Oracle, cache, is_float, oracle, witnesses


class Tolerance(NamedTuple):
    """The tolerances and finite-difference step of one check."""

    rtol: float
    fd_rtol: float
    step: float
    fd: str = "auto"


def tolerance(where: str, rtol, fd_rtol, step, fd="auto") -> Tolerance:
    """Validated :class:`Tolerance` (each a positive number; ``fd`` one of ``FD_MODES``)."""
    return Tolerance(*(positive_number(where, name, value, f"{name}=1e-6")
                       for name, value in (("rtol", rtol), ("fd_rtol", fd_rtol), ("step", step))),
                     one_of(where, "fd", fd, FD_MODES, "a finite-difference mode"))


def settings(tol: Tolerance, points: str, elements: int | None = None) -> str:
    """The header line of a report: witnesses, step, tolerances and the points checked (and,
    given the number of ``elements`` checked at a time, whether differences were sampled)."""
    sampled = tol.fd == "sampled" or (tol.fd == "auto" and elements is not None
                                      and elements > FULL_FD_MAX)
    how = ("at the worst, largest and random elements and along random directions of each "
           "leaf (sampled: manual vs autodiff on every element)" if sampled else "")
    return (f"witnesses: manual backward, autodiff (jax.vjp), central finite differences "
            f"(float64, step {tol.step:g}·max(1,|θ|)){' ' + how if how else ''}; rtol "
            f"{tol.rtol:g}, fd_rtol {tol.fd_rtol:g}; {points}")


def leaf_path(path, prefix: str) -> str:
    """A readable leaf path: ``layers[2].w`` under ``prefix="layers"``, ``w`` without one."""
    s = jax.tree_util.keystr(path)
    return prefix + s if prefix else (s[1:] if s.startswith(".") else s or "params")


def grad_name(path: str) -> str:
    """The gradient's name for a leaf path: ``x`` → ``dx``, ``gamma`` → ``dgamma``."""
    if path == "x":
        return "dx"
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
                           trust_fd=trust_fd)
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
    dtype narrower than float64 the rows are recomputed with that rule off (a warning)."""
    out = compute(True)
    if not any(r.verdict.endswith(SHARED) for r in out):
        return out, None
    info = inspect_function(oracle_.fn, primal, aux)
    return (compute(False) if info.narrow_dtypes else out), info


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
    if jax.tree_util.tree_structure(manual) != jax.tree_util.tree_structure(params):
        return [structure_row(prefix, manual, params, where)]
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return rows([leaf_path(p, prefix) for p, _ in leaves], jax.tree_util.tree_leaves(manual),
                jax.tree_util.tree_leaves(auto), fds, tol, where, contexts, trust_fd)


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


def layer_report_and_dx(layer: Layer, params, x, dy, key, *, tol: Tolerance, prefix: str = "",
                        where: str = "") -> tuple[GradientReport, jax.Array | None]:
    """The report of ``layer`` at ``(params, x)`` along ``dy`` (no location), and autodiff's
    ``dx`` there — the cotangent reaching the layer below (None for integer inputs)."""
    x_float = is_float(x)
    primal = {"params": params, "x": x} if x_float else {"params": params}
    aux = (dy, None if x_float else x, key)
    layer_oracle = _layer_oracle(layer)
    try:
        (_, (dparams, dx)), auto, fds = witnesses(
            layer_oracle, primal, aux, step=tol.step, magnitude=lambda m: m[0], fd=tol.fd,
            grads=lambda m: jax.tree_util.tree_leaves(m[1][0]) + ([m[1][1]] if x_float else []))
    except Exception as e:
        e.add_note(f"(raised while running {layer.name}'s forward and backward in the check)")
        raise
    n_p = len(jax.tree_util.tree_leaves(params))
    batch = int(x.shape[0])
    dy_ctx = np.asarray(dy) if x_float and np.shape(dy) == np.shape(x) else None

    def compute(trust_fd):
        out = param_rows(prefix, dparams, auto["params"], params, fds[:n_p], tol, where,
                         [Context(batch=batch)] * n_p, trust_fd)
        return out + (rows(["x"], [dx], [auto["x"]], fds[n_p:], tol, where,
                           [Context(batch=batch, dy=dy_ctx)], trust_fd) if x_float else [])

    out, forward = with_forward(compute, layer_oracle, primal, aux)
    return GradientReport(layer.name, tuple(out), forward=forward), auto.get("x")


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


__all__ = ["Tolerance", "grad_name", "layer_report", "layer_report_and_dx", "leaf_path",
           "loss_report", "loss_report_and_grad", "param_rows", "rows", "settings",
           "SHARED_HINT", "structure_row", "tolerance", "with_forward", "wrong_grads"]
