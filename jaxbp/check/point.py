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
from jaxbp.check.report import FAIL, GradientReport, LeafCheck, compare_leaf
from jaxbp._validate import positive_number
from jaxbp.check.witnesses import cache, is_float, oracle, witnesses


class Tolerance(NamedTuple):
    """The tolerances and finite-difference step of one check."""

    rtol: float
    fd_rtol: float
    step: float


def tolerance(where: str, rtol, fd_rtol, step) -> Tolerance:
    """Validated :class:`Tolerance` (each a positive number)."""
    return Tolerance(*(positive_number(where, name, value, f"{name}=1e-6")
                       for name, value in (("rtol", rtol), ("fd_rtol", fd_rtol), ("step", step))))


def settings(tol: Tolerance, points: str) -> str:
    """The header line of a report: witnesses, step, tolerances and the points checked."""
    return (f"witnesses: manual backward, autodiff (jax.vjp), central finite differences "
            f"(float64, step {tol.step:g}·max(1,|θ|)); rtol {tol.rtol:g}, fd_rtol "
            f"{tol.fd_rtol:g}; {points}")


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


def rows(paths, manual, auto, fds, tol: Tolerance, where: str, contexts) -> list[LeafCheck]:
    """One compared row per leaf; a failing row gets its diagnosis hint."""
    out = []
    for path, m, a, fd, ctx in zip(paths, manual, auto, fds, contexts):
        row = compare_leaf(path, m, a, fd, rtol=tol.rtol, fd_rtol=tol.fd_rtol, where=where)
        if row.status == FAIL:
            row = dataclasses.replace(row, hint=diagnose(m, a, ctx))
        out.append(row)
    return out


def structure_row(prefix: str, got, want, where: str) -> LeafCheck:
    """The failing row of a manual gradient whose pytree structure differs from the params'."""
    return LeafCheck(prefix or "params", (), FAIL,
                     f"manual dparams has structure {jax.tree_util.tree_structure(got)}, "
                     f"params have {jax.tree_util.tree_structure(want)} → return dparams "
                     f"shaped like params", where=where,
                     hint="wrong structure: return the same NamedTuple/tuple as params")


def param_rows(prefix: str, manual, auto, params, fds, tol: Tolerance, where: str,
               contexts) -> list[LeafCheck]:
    """The rows of every parameter leaf, or one structure row if ``manual`` is shaped wrong."""
    if jax.tree_util.tree_structure(manual) != jax.tree_util.tree_structure(params):
        return [structure_row(prefix, manual, params, where)]
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return rows([leaf_path(p, prefix) for p, _ in leaves], jax.tree_util.tree_leaves(manual),
                jax.tree_util.tree_leaves(auto), fds, tol, where, contexts)


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
    try:
        (_, (dparams, dx)), auto, fds = witnesses(_layer_oracle(layer), primal, aux,
                                                   step=tol.step, magnitude=lambda m: m[0])
    except Exception as e:
        e.add_note(f"(raised while running {layer.name}'s forward and backward in the check)")
        raise
    n_p = len(jax.tree_util.tree_leaves(params))
    batch = int(x.shape[0])
    out = param_rows(prefix, dparams, auto["params"], params, fds[:n_p], tol, where,
                     [Context(batch=batch)] * n_p)
    if x_float:
        dy_ctx = np.asarray(dy) if np.shape(dy) == np.shape(x) else None
        out += rows(["x"], [dx], [auto["x"]], fds[n_p:], tol, where,
                    [Context(batch=batch, dy=dy_ctx)])
    return GradientReport(layer.name, tuple(out)), auto.get("x")


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
    manual, auto, fds = witnesses(_loss_oracle(loss), {"y_pred": y_pred}, y_true, step=tol.step)
    auto = auto["y_pred"]
    ctx = Context(batch=int(y_pred.shape[0]), n=int(y_pred.size))
    out = tuple(rows(["y_pred"], [manual], [auto], fds, tol, where, [ctx]))
    report = GradientReport(loss.name, out)
    if not report.ok:
        report = GradientReport(loss.name, out, f"loss ({loss.name}): gradient wrong", None)
    return report, auto


def loss_report(loss: Loss, y_pred, y_true, *, tol: Tolerance, where: str = "") -> GradientReport:
    """The report of ``loss.grad`` at ``(y_pred, y_true)``."""
    return loss_report_and_grad(loss, y_pred, y_true, tol=tol, where=where)[0]


__all__ = ["Tolerance", "grad_name", "layer_report", "layer_report_and_dx", "leaf_path",
           "loss_report", "loss_report_and_grad", "param_rows", "rows", "settings",
           "structure_row", "tolerance", "wrong_grads"]
