"""Diagnosis hints: the classic slips of a hand derivation, read off the shape of the error.

Given the hand-derived gradient ``manual`` of one leaf and a trusted ``reference`` (autodiff,
confirmed by finite differences), each rule tests one structural relation between them. The
rules are tried in the order of :data:`RULES` (the order of this table); the first that holds
gives the hint:

=============================  ==============================================================
slip                           relation tested
=============================  ==============================================================
transposed weight gradient     ``manual.shape == reference.shape[::-1]`` (2-D)
bias reduced over wrong axis   ``manual.shape == (batch,)`` for a 1-D parameter
wrong shape                    any other ``manual.shape != reference.shape``
NaN/inf                        ``manual`` not finite
dropped term                   ``manual == 0``
sign error                     ``manual == -reference``
transposed weight gradient     ``manual == reference.T`` (square)
missing activation derivative  ``dx == dy`` (the cotangent passed through unchanged)
missing skip path              ``reference - dx == dy`` (a residual's identity path dropped:
                               the adjoint of a fan-out is the sum of its paths' cotangents)
missing fan-out path           ``reference - dx`` is the sum of some of a fan-out's path
                               cotangents (one path's left out of ``dx = dy_1 + ... + dy_n``)
missing regularisation term    ``reference - manual == l2 * w`` or ``l1 * sign(w)`` (or a
                               wrong sign or scale of the L2 term, a wrong sign of the L1 term)
mean instead of sum            ``manual == reference / batch``
sum instead of mean            ``manual == batch * reference``
missing / extra 1/n            ``manual == n * reference`` or ``reference / n`` (``n`` the
                               elements a loss averages)
factor of two                  ``manual == 2 * reference`` or ``reference / 2``
wrong constant factor          ``manual == c * reference`` for another ``c``
bias reduced over wrong axis   same total, split differently over the features
wrong local derivative         ``dx`` wrong element by element (a layer's input row)
=============================  ==============================================================

Adding a hint is one rule function ``(Evidence) -> str | None`` and one line in :data:`RULES`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple
from collections.abc import Callable

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
      paths: for the ``x`` row of a layer whose output is a tuple of arrays each shaped like
        ``x`` (a fan-out), those cotangents stacked, ``(n, *x.shape)``.
    """

    batch: int | None = None
    n: int | None = None
    dy: np.ndarray | None = None
    param: np.ndarray | None = None
    l1: float = 0.0
    l2: float = 0.0
    paths: np.ndarray | None = None


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


def _near(c: float | None, target: float) -> bool:
    return c is not None and abs(c - target) <= 1e-4 * abs(target)


@dataclasses.dataclass(frozen=True)
class Evidence:
    """What a rule reads: the two gradients of one leaf (float64) and the :class:`Context`."""

    manual: np.ndarray
    reference: np.ndarray
    ctx: Context

    @functools.cached_property
    def factor(self) -> float | None:
        """``c`` with ``manual == c · reference``, or None (same shapes only)."""
        return _factor(self.manual, self.reference)

    @functools.cached_property
    def l2_factor(self) -> float | None:
        """``c`` with ``reference − manual == c · w`` when an L2 penalty is in force, or None."""
        return self._penalty_factor(self.ctx.l2, lambda w: w)

    @functools.cached_property
    def l1_factor(self) -> float | None:
        """``c`` with ``reference − manual == c · sign(w)`` when an L1 penalty is in force."""
        return self._penalty_factor(self.ctx.l1, np.sign)

    def _penalty_factor(self, coefficient: float, term: Callable) -> float | None:
        w = self.ctx.param
        if not coefficient or w is None or np.shape(w) != self.manual.shape:
            return None
        return _factor(self.reference - self.manual, term(w))


Rule = Callable[[Evidence], "str | None"]

# --------------------------------------------------------------------------------------
# The rules, in the order of RULES. Shapes first: the gradient is not shaped like its leaf.


def transposed_shape(e: Evidence) -> str | None:
    m, r = e.manual, e.reference
    if m.ndim == 2 and m.shape != r.shape and m.shape == r.shape[::-1]:
        return (f"transposed weight gradient: manual has shape {m.shape}, the parameter "
                f"{r.shape} — compute dw = x^T @ dy (d_in, d_out), not dy^T @ x")
    return None


def bias_batch_shape(e: Evidence) -> str | None:
    m, r = e.manual, e.reference
    if (m.shape != r.shape and r.ndim == 1 and m.ndim == 1 and e.ctx.batch is not None
            and m.shape == (e.ctx.batch,)):
        return (f"bias gradient reduced over the wrong axis: manual has shape {m.shape} = "
                f"(batch,), the bias {r.shape} — sum dy over the batch axis (axis 0)")
    return None


def wrong_shape(e: Evidence) -> str | None:
    m, r = e.manual, e.reference
    if m.shape != r.shape:
        return (f"manual has shape {m.shape} but the parameter has shape {r.shape}: the "
                f"backward must return a gradient shaped like what it differentiates")
    return None


# Same shapes from here on (wrong_shape caught the rest).


def not_finite(e: Evidence) -> str | None:
    return None if np.all(np.isfinite(e.manual)) else (
        "manual gradient has NaN/inf: a division by zero or an overflow in the backward "
        "(log(0), 1/p at p = 0, exp of a large value) — use a stable form")


def dropped_term(e: Evidence) -> str | None:
    return ("manual gradient is zero: this term is never computed, or not returned"
            if not np.any(e.manual) and np.any(e.reference) else None)


def sign_error(e: Evidence) -> str | None:
    return ("sign error: manual = −reference — check the sign of each term"
            if _close(e.manual, -e.reference) else None)


def transposed_square(e: Evidence) -> str | None:
    m = e.manual
    return ("transposed weight gradient: manual = reference^T — compute dw = x^T @ dy, not "
            "dy^T @ x" if m.ndim == 2 and m.shape[0] == m.shape[1] and _close(m, e.reference.T)
            else None)


def missing_activation_derivative(e: Evidence) -> str | None:
    return ("missing activation derivative: dx equals the incoming dy — multiply by the local "
            "derivative, dx = dy * f'(x)"
            if e.ctx.dy is not None and _close(e.manual, np.asarray(e.ctx.dy)) else None)


def missing_skip_path(e: Evidence) -> str | None:
    return ("missing skip path: reference − manual equals the incoming dy — x also feeds the "
            "identity path of a skip connection, and the adjoint of a fan-out sums the "
            "cotangents of every path: dx = dy + dx_block"
            if e.ctx.dy is not None and _close(e.reference - e.manual, np.asarray(e.ctx.dy))
            else None)


def missing_fan_out_path(e: Evidence) -> str | None:
    paths = e.ctx.paths
    if paths is None or len(paths) > 8:
        return None
    gap = e.reference - e.manual
    for left_out in range(1, 2 ** len(paths) - 1):  # every proper subset of the paths
        chosen = [k for k in range(len(paths)) if left_out >> k & 1]
        if _close(gap, np.sum(paths[chosen], axis=0)):
            return (f"missing fan-out path: reference − manual equals the cotangent of path(s) "
                    f"{', '.join(map(str, chosen))} — x feeds every path, and the adjoint of a "
                    f"fan-out is the sum of all their cotangents: dx = dy_1 + ... + dy_n")
    return None


def missing_l2(e: Evidence) -> str | None:
    return (f"missing L2 regularisation term: reference − manual = l2 · w (l2 = {e.ctx.l2:g}) "
            f"— add l2 * w to this weight's gradient" if _near(e.l2_factor, e.ctx.l2) else None)


def l2_wrong_sign(e: Evidence) -> str | None:
    return ("L2 regularisation term with the wrong sign: use + l2 * w, not − l2 * w"
            if _near(e.l2_factor, 2 * e.ctx.l2) else None)


def l2_mis_scaled(e: Evidence) -> str | None:
    return None if e.l2_factor is None else (
        f"L2 regularisation term mis-scaled: the error is {e.l2_factor:.4g} · w, expected "
        f"l2 · w with l2 = {e.ctx.l2:g} (note the penalty is (l2/2) Σ w², gradient l2 w)")


def missing_l1(e: Evidence) -> str | None:
    return (f"missing L1 regularisation term: reference − manual = l1 · sign(w) "
            f"(l1 = {e.ctx.l1:g}) — add l1 * sign(w) to this weight's gradient"
            if _near(e.l1_factor, e.ctx.l1) else None)


def l1_wrong_sign(e: Evidence) -> str | None:
    return ("L1 regularisation term with the wrong sign: use + l1 * sign(w)"
            if _near(e.l1_factor, 2 * e.ctx.l1) else None)


def mean_instead_of_sum(e: Evidence) -> str | None:
    b = e.ctx.batch
    return (f"mean instead of sum over the batch: manual = reference / {b} (the batch size) — "
            f"a layer's backward sums over the batch; only the loss averages"
            if b and b > 1 and _near(e.factor, 1.0 / b) else None)


def sum_instead_of_mean(e: Evidence) -> str | None:
    b = e.ctx.batch
    return (f"sum instead of mean over the batch: manual = {b} × reference (the batch size) — "
            f"divide by the batch size, as the loss value does"
            if b and b > 1 and _near(e.factor, float(b)) else None)


def missing_one_over_n(e: Evidence) -> str | None:
    n = e.ctx.n
    return (f"missing 1/n: manual = {n} × reference, n = y_pred.size the number of elements "
            f"averaged — divide by n, as the loss value does"
            if n and n > 1 and _near(e.factor, float(n)) else None)


def extra_one_over_n(e: Evidence) -> str | None:
    n = e.ctx.n
    return (f"extra 1/n: manual = reference / {n} — the mean is taken twice"
            if n and n > 1 and _near(e.factor, 1.0 / n) else None)


def factor_two(e: Evidence) -> str | None:
    return ("off by a factor of 2: manual = 2 × reference — a term counted twice?"
            if _near(e.factor, 2.0) else None)


def factor_half(e: Evidence) -> str | None:
    return ("off by a factor of 1/2: manual = reference / 2 — the 2 of d(x²)/dx = 2x forgotten?"
            if _near(e.factor, 0.5) else None)


def constant_factor(e: Evidence) -> str | None:
    return (None if e.factor is None else
            f"a wrong constant factor: manual = {e.factor:.6g} × reference")


def bias_split(e: Evidence) -> str | None:
    m, r = e.manual, e.reference
    return ("bias gradient reduced over the wrong axis: the total matches but the split over "
            "features does not — sum dy over axis 0 (the batch), keep the feature axis"
            if m.ndim == 1 and m.size > 1
            and _close(np.sum(m, keepdims=True), np.sum(r, keepdims=True)) else None)


def wrong_local_derivative(e: Evidence) -> str | None:
    return (None if e.ctx.dy is None else
            "elementwise error in the local derivative: dx/dy is wrong element by element — "
            "check f'(x) (evaluated at the input or the cached output as intended?)")


RULES: tuple[Rule, ...] = (
    transposed_shape,
    bias_batch_shape,
    wrong_shape,
    not_finite,
    dropped_term,
    sign_error,
    transposed_square,
    missing_activation_derivative,
    missing_skip_path,
    missing_fan_out_path,
    missing_l2,
    l2_wrong_sign,
    l2_mis_scaled,
    missing_l1,
    l1_wrong_sign,
    mean_instead_of_sum,
    sum_instead_of_mean,
    missing_one_over_n,
    extra_one_over_n,
    factor_two,
    factor_half,
    constant_factor,
    bias_split,
    wrong_local_derivative,
)
"""The diagnosis rules, most specific first: the first whose relation holds names the slip."""

NO_PATTERN = "no classic pattern: compare the formula term by term at the worst element"


def diagnose(manual, reference, ctx: Context = Context()) -> str:
    """A one-line hint naming the likely slip that turns ``reference`` into ``manual``.

    Args:
      manual: the hand-derived gradient of one leaf.
      reference: the trusted gradient of the same leaf (autodiff).
      ctx: what else is known (batch size, cotangent, parameter value, penalties).

    Returns:
      The hint of the first rule in :data:`RULES` that holds, or :data:`NO_PATTERN`.
    """
    evidence = Evidence(np.asarray(manual, np.float64), np.asarray(reference, np.float64), ctx)
    return next((hint for rule in RULES if (hint := rule(evidence))), NO_PATTERN)


__all__ = ["NO_PATTERN", "RULES", "Context", "Evidence", "Rule", "diagnose"]
