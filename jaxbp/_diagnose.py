"""Diagnosis hints: the classic slips of a hand derivation, read off the shape of the error.

Given the hand-derived gradient ``manual`` of one leaf and a trusted ``reference`` (autodiff,
confirmed by finite differences), each rule below tests one structural relation between them:

=============================  ==============================================================
slip                           relation tested
=============================  ==============================================================
transposed weight gradient     ``manual.shape == reference.shape[::-1]`` or ``manual == reference.T``
bias reduced over wrong axis   ``manual.shape == (batch,)``, or same totals but a different split
sign error                     ``manual == -reference``
missing activation derivative  ``dx == dy`` (the cotangent passed through unchanged)
missing regularisation term    ``reference - manual == l2 * w`` or ``l1 * sign(w)``
mean instead of sum            ``manual == reference / batch``
sum instead of mean            ``manual == batch * reference`` (or ``n *``, ``n`` the elements averaged)
factor of two                  ``manual == 2 * reference`` or ``reference / 2``
dropped term                   ``manual == 0``
=============================  ==============================================================
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

_TOL = 1e-5  # the relations are exact algebra; this only absorbs float64 round-off


class Context(NamedTuple):
    """What the diagnosis may use besides the two gradients.

    Attributes:
      batch: the batch size of the point checked.
      n: for a loss, the number of elements it averages over (``y_pred.size``).
      dy: for the ``x`` row of a layer, the cotangent ``dL/dy`` fed to its backward.
      param: the leaf's own value (for regularisation terms).
      l1: the L1 coefficient in force (0 if none).
      l2: the L2 coefficient in force (0 if none).
    """

    batch: int | None = None
    n: int | None = None
    dy: np.ndarray | None = None
    param: np.ndarray | None = None
    l1: float = 0.0
    l2: float = 0.0


def _close(a: np.ndarray, b: np.ndarray, tol: float = _TOL) -> bool:
    if np.shape(a) != np.shape(b):
        return False
    scale = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(b), initial=0.0))
    return scale > 0 and float(np.max(np.abs(a - b))) <= tol * scale


def _factor(a: np.ndarray, b: np.ndarray) -> float | None:
    """``c`` with ``a == c * b`` (least squares, then verified), or None."""
    bb = float(np.vdot(b, b))
    if bb == 0.0:
        return None
    c = float(np.vdot(a, b)) / bb
    return c if _close(a, c * b) else None


def _near(c: float, target: float) -> bool:
    return abs(c - target) <= 1e-4 * abs(target)


def _shape_hint(m: np.ndarray, r: np.ndarray, ctx: Context) -> str:
    if m.ndim == 2 and m.shape == r.shape[::-1]:
        return (f"transposed weight gradient: manual has shape {m.shape}, the parameter "
                f"{r.shape} — compute dw = x^T @ dy (d_in, d_out), not dy^T @ x")
    if r.ndim == 1 and m.ndim == 1 and ctx.batch is not None and m.shape == (ctx.batch,):
        return (f"bias gradient reduced over the wrong axis: manual has shape {m.shape} = "
                f"(batch,), the bias {r.shape} — sum dy over the batch axis (axis 0)")
    return (f"manual has shape {m.shape} but the parameter has shape {r.shape}: the backward "
            f"must return a gradient shaped like what it differentiates")


def _regularisation_hint(diff: np.ndarray, ctx: Context) -> str | None:
    w = ctx.param
    if w is None or not (ctx.l1 or ctx.l2) or np.shape(w) != diff.shape:
        return None
    if ctx.l2:
        c = _factor(diff, w)
        if c is not None and _near(c, ctx.l2):
            return (f"missing L2 regularisation term: reference − manual = l2 · w "
                    f"(l2 = {ctx.l2:g}) — add l2 * w to this weight's gradient")
        if c is not None and _near(c, 2 * ctx.l2):
            return "L2 regularisation term with the wrong sign: use + l2 * w, not − l2 * w"
        if c is not None:
            return (f"L2 regularisation term mis-scaled: the error is {c:.4g} · w, expected "
                    f"l2 · w with l2 = {ctx.l2:g} (note the penalty is (l2/2) Σ w², gradient l2 w)")
    if ctx.l1:
        c = _factor(diff, np.sign(w))
        if c is not None and _near(c, ctx.l1):
            return (f"missing L1 regularisation term: reference − manual = l1 · sign(w) "
                    f"(l1 = {ctx.l1:g}) — add l1 * sign(w) to this weight's gradient")
        if c is not None and _near(c, 2 * ctx.l1):
            return "L1 regularisation term with the wrong sign: use + l1 * sign(w)"
    return None


def _factor_hint(c: float, ctx: Context) -> str:
    b, n = ctx.batch, ctx.n
    if b and b > 1 and _near(c, 1.0 / b):
        return (f"mean instead of sum over the batch: manual = reference / {b} (the batch "
                f"size) — a layer's backward sums over the batch; only the loss averages")
    if b and b > 1 and _near(c, float(b)):
        return (f"sum instead of mean over the batch: manual = {b} × reference (the batch "
                f"size) — divide by the batch size, as the loss value does")
    if n and n > 1 and _near(c, float(n)):
        return (f"missing 1/n: manual = {n} × reference, n = y_pred.size the number of "
                f"elements averaged — divide by n, as the loss value does")
    if n and n > 1 and _near(c, 1.0 / n):
        return f"extra 1/n: manual = reference / {n} — the mean is taken twice"
    if _near(c, 2.0):
        return "off by a factor of 2: manual = 2 × reference — a term counted twice?"
    if _near(c, 0.5):
        return ("off by a factor of 1/2: manual = reference / 2 — the 2 of d(x²)/dx = 2x "
                "forgotten?")
    return f"a wrong constant factor: manual = {c:.6g} × reference"


def diagnose(manual, reference, ctx: Context = Context()) -> str:
    """A one-line hint naming the likely slip that turns ``reference`` into ``manual``.

    Args:
      manual: the hand-derived gradient of one leaf.
      reference: the trusted gradient of the same leaf (autodiff).
      ctx: what else is known (batch size, cotangent, parameter value, penalties).

    Returns:
      The hint, or a generic description when no classic pattern fits.
    """
    m = np.asarray(manual, np.float64)
    r = np.asarray(reference, np.float64)
    if m.shape != r.shape:
        return _shape_hint(m, r, ctx)
    if not np.all(np.isfinite(m)):
        return ("manual gradient has NaN/inf: a division by zero or an overflow in the "
                "backward (log(0), 1/p at p = 0, exp of a large value) — use a stable form")
    if not np.any(m) and np.any(r):
        return "manual gradient is zero: this term is never computed, or not returned"
    if _close(m, -r):
        return "sign error: manual = −reference — check the sign of each term"
    if m.ndim == 2 and m.shape[0] == m.shape[1] and _close(m, r.T):
        return ("transposed weight gradient: manual = reference^T — compute dw = x^T @ dy, "
                "not dy^T @ x")
    if ctx.dy is not None and _close(m, np.asarray(ctx.dy)):
        return ("missing activation derivative: dx equals the incoming dy — multiply by the "
                "local derivative, dx = dy * f'(x)")
    reg = _regularisation_hint(r - m, ctx)
    if reg:
        return reg
    c = _factor(m, r)
    if c is not None:
        return _factor_hint(c, ctx)
    if m.ndim == 1 and m.size > 1 and _close(np.sum(m, keepdims=True), np.sum(r, keepdims=True)):
        return ("bias gradient reduced over the wrong axis: the total matches but the split "
                "over features does not — sum dy over axis 0 (the batch), keep the feature axis")
    if ctx.dy is not None:
        return ("elementwise error in the local derivative: dx/dy is wrong element by element "
                "— check f'(x) (evaluated at the input or the cached output as intended?)")
    return "no classic pattern: compare the formula term by term at the worst element"


__all__ = ["Context", "diagnose"]
