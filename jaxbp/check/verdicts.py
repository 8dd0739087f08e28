"""The verdict on one leaf: the three witnesses compared element by element (and along random
directions), in words.

Per element, with ``scale`` the largest magnitude in the leaf:

- manual ≈ autodiff  when ``|m - a| <= rtol * scale``;
- a value agrees with finite differences when it lies in the interval spanned by the forward and
  backward one-sided differences, widened by ``tol = fd_rtol * scale + noise`` (``noise`` the
  estimated round-off ``32 eps max|terms| / h``). At a smooth point that interval has width
  ``h |f''|`` around the central difference; at a kink (ReLU at 0, a max tie, ``|w|`` at 0)
  within the step it spans the subgradients, so any valid subgradient passes.

An element **fails** when manual agrees with neither autodiff nor finite differences, no kink
lies within the step — or when manual and autodiff agree but *both* lie outside the interval by
more than ``SHARED_WIDEN · tol`` at a point with no kink (autodiff then runs a custom rule, or
the two are wrong together: :data:`SHARED`). That rule's tolerance is wider than the others
because it overrules autodiff on the word of finite differences alone: a wrong rule is wrong by
a factor (3 for the classic slips), whereas the round-off estimate can be low by a factor of
a few where the forward cancels internally (softmax, layer norm, an LSTM's gates). It is off
(a warning instead) when the function computes in a dtype narrower than float64.

In sampled mode (large checks) only some elements carry finite differences (``checked``); the
rest are judged by manual vs autodiff alone, and random directional derivatives
``(f(θ + h v) - f(θ - h v)) / 2h`` against ``<grad, v>`` cover the whole leaf.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, NamedTuple

import numpy as np


class Status(enum.StrEnum):
    """A row's status; a ``str``, so ``row.status == "warn"`` and formatting read as the value."""

    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


OK, WARN, FAIL = Status.OK, Status.WARN, Status.FAIL
RANK = {OK: 0, WARN: 1, FAIL: 2}
"""The order of the statuses, worst last."""

SHARED_WIDEN = 100.0
"""The factor by which :data:`SHARED`'s tolerance is wider than the finite-difference one."""

AGREE = "all three agree"
KINK = ("manual and autodiff pick different subgradients at a kink; both lie in the "
        "one-sided difference interval → ok")
SMALL = ("manual and autodiff differ by more than rtol but within finite-difference "
         "accuracy → a tiny error or round-off")
FD_ONLY = "manual and autodiff agree, finite differences differ → step size, kink or precision"
FD_PRECISION = ("manual and autodiff agree, finite differences differ, and the function computes "
                "in a dtype narrower than float64 → round-off of the finite differences, not "
                "conclusive")
SHARED = ("manual and autodiff agree, finite differences differ (no kink within the step) → "
          "autodiff runs a custom rule, or both are wrong")
KINK_AUTO = ("at a kink manual lies in the one-sided difference interval (a valid "
             "subgradient); autodiff lies outside it (a tie rule such as jnp.minimum's 1/2) → ok")
KINK_MULTI = ("at a kink where several non-differentiable terms meet (ties, overlapping "
              "windows) manual and autodiff agree on a subgradient outside the one-sided "
              "interval → ok")
KINK_OUTSIDE = ("at a kink manual differs from autodiff and lies outside the one-sided interval "
                "→ not conclusive (where several kinks meet, the chain rule admits other "
                "subgradients); check at a point off the kink")
AUTO_OFF = ("manual agrees with finite differences, autodiff differs → the forward is not "
            "differentiated as written (stop_gradient, custom rule)")
DERIVATION = "manual disagrees with autodiff and finite differences → derivation error"
ALL_DIFFER = ("all three disagree → derivation error (autodiff also differs from finite "
              "differences: non-smooth or ill-conditioned point)")
NOT_FINITE = "manual gradient is NaN or inf → derivation error"
UNVERIFIED = ("manual and autodiff differ at elements without finite differences (sampled "
              "mode checked the worst of them) → fd='full' to check every element")
COARSE = ("manual and autodiff differ by more than rtol, and finite differences in this narrow "
          "dtype are too coarse to decide between them → derivation error (or round-off "
          "beyond rtol: check in float64 if the code allows)")
ALONG = "along random directions v, <grad, v> vs (f(θ+hv) - f(θ-hv))/2h: "
"""Prefix of a verdict reached by a directional derivative rather than at one element."""


class Directional(NamedTuple):
    """Directional derivatives of one leaf along ``k`` random directions (arrays ``(k,)``):
    the projections ``<manual, v>``, ``<autodiff, v>`` and the finite differences along ``v``."""

    manual: np.ndarray
    autodiff: np.ndarray
    central: np.ndarray
    forward: np.ndarray
    backward: np.ndarray
    noise: np.ndarray


class FiniteDiff(NamedTuple):
    """Finite differences of one leaf: central, one-sided, the round-off estimate; ``checked``
    marks the elements differenced (None: all), ``directions`` the directional derivatives."""

    central: np.ndarray
    forward: np.ndarray
    backward: np.ndarray
    noise: np.ndarray
    checked: np.ndarray | None = None
    directions: Directional | None = None


@dataclasses.dataclass(frozen=True)
class LeafCheck:
    """One row of the report: the three witnesses compared on one leaf.

    Attributes:
      path: readable path of the leaf (``layers[2].w``; ``x`` for the input gradient ``dx``).
      shape: the leaf's shape.
      status: a :class:`Status` — ``"ok"``, ``"warn"`` (not a derivation error, but worth a
        look) or ``"FAIL"``; it compares equal to those strings.
      verdict: the verdict in words.
      max_abs_err: ``max |manual - autodiff|``.
      max_rel_err: ``max_abs_err`` over the largest magnitude in the leaf.
      fd_err: the largest distance of manual from the finite-difference interval, relative.
      index: the worst element's index (None when a directional derivative decided).
      manual, autodiff, finite_diff: the three values at the worst element.
      kinks: how many elements lie within the step of a kink.
      hint: for a failing leaf, the likely slip.
      where: which draw (batch size, draw number) gave the worst case.
    """

    path: str
    shape: tuple
    status: Status
    verdict: str
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    fd_err: float = 0.0
    index: tuple | None = None
    manual: float = float("nan")
    autodiff: float = float("nan")
    finite_diff: float = float("nan")
    kinks: int = 0
    hint: str = ""
    where: str = ""

    def badness(self) -> tuple:
        return (RANK[self.status], max(self.max_rel_err, self.fd_err))


class _Judged(NamedTuple):
    fail: np.ndarray
    warn: np.ndarray
    err: np.ndarray
    dist: np.ndarray
    verdicts: dict


def _judge(m, a, fd, checked, scale, rtol, fd_rtol, trust_fd, narrow=False) -> _Judged:
    """Element-wise masks of the rules of the module docstring (``fd`` central/forward/backward/
    noise arrays shaped like ``m``, NaN where not ``checked``). ``narrow`` (a check in float32 or
    bfloat16): finite differences whose round-off exceeds the manual-vs-autodiff gap cannot
    vouch for manual."""
    finite = np.isfinite(m)
    lo = np.where(checked, np.minimum(fd.forward, fd.backward), -np.inf)
    hi = np.where(checked, np.maximum(fd.forward, fd.backward), np.inf)
    tol = fd_rtol * scale + fd.noise
    diff = np.abs(m - a)
    ma = diff <= rtol * scale
    dist_m = np.maximum(np.maximum(lo - m, m - hi), 0.0)
    mf = dist_m <= tol
    coarse = np.zeros(m.shape, bool)
    if narrow:
        coarse = checked & ~ma & (fd.noise >= diff)
        mf = mf & ~coarse
    dist_a = np.maximum(np.maximum(lo - a, a - hi), 0.0)
    af = dist_a <= tol
    with np.errstate(invalid="ignore"):
        kink = checked & ((hi - lo) > np.maximum(100.0 * tol, 1e-4 * scale))
        conclusive = checked & np.isfinite(lo) & np.isfinite(hi) & ~kink
        shared = conclusive & ma & finite & (np.minimum(dist_m, dist_a) > SHARED_WIDEN * tol)
    unverified = ~ma & ~checked
    # At a kink nothing is conclusive enough to fail: a derivation error shows off the kinks.
    fail = ~finite | (checked & ~ma & ~mf & ~kink) | (shared if trust_fd else False)
    warn = ~fail & (np.where(kink, ~ma & ~mf, checked & (~ma | ~af)) | unverified
                    | (shared & ~trust_fd))
    err = np.where(finite, np.maximum(diff, np.where(checked, dist_m, 0.0)), np.inf)
    masks = dict(finite=finite, ma=ma, mf=mf, af=af, kink=kink, shared=shared,
                 unverified=unverified, coarse=coarse)
    return _Judged(fail, warn, err, np.where(checked, dist_m, 0.0), masks)


def _verdict(j: _Judged, at, trust_fd: bool) -> tuple[Status, str]:
    v = {k: bool(mask[at]) for k, mask in j.verdicts.items()}
    if j.fail[at]:
        return FAIL, (NOT_FINITE if not v["finite"] else SHARED if v["ma"] else
                      COARSE if v["coarse"] else DERIVATION if v["af"] else ALL_DIFFER)
    if j.warn[at]:
        return WARN, (KINK_OUTSIDE if v["kink"] else UNVERIFIED if v["unverified"] else
                      (FD_ONLY if trust_fd or not v["shared"] else FD_PRECISION) if v["ma"] else
                      AUTO_OFF if v["mf"] and not v["af"] else SMALL)
    return OK, AGREE


def _worst(j: _Judged, checked: np.ndarray) -> int:
    """The worst failing element, else the worst warning, else the worst of those with finite
    differences (so an ok row shows all three witnesses)."""
    pool = j.fail if j.fail.any() else j.warn if j.warn.any() else (
        checked if checked.any() else np.ones_like(j.fail))
    return int(np.argmax(np.where(pool, j.err, -1.0)))


def compare_leaf(path: str, manual, autodiff, fd: FiniteDiff, *, rtol: float, fd_rtol: float,
                 where: str = "", trust_fd: bool = True, narrow: bool = False) -> LeafCheck:
    """Compares the three witnesses on one leaf and returns its row (without a hint).

    ``trust_fd=False`` (a function computing in a dtype narrower than the check's) turns
    :data:`SHARED` into a warning; ``narrow=True`` (a check in float32 or bfloat16) fails a
    manual-vs-autodiff gap that the finite differences are too coarse to resolve
    (:data:`COARSE`).
    """
    m = np.asarray(manual, np.float64)
    a = np.asarray(autodiff, np.float64)
    if m.shape != a.shape:
        return LeafCheck(path, a.shape, FAIL, f"manual has shape {m.shape}, expected {a.shape} "
                         "→ derivation error", float("inf"), float("inf"), float("inf"),
                         where=where)
    finite = np.isfinite(m)
    scale = max(np.max(np.abs(np.where(finite, m, 0.0)), initial=0.0),
                np.max(np.abs(a), initial=0.0), 1e-300)
    checked = np.ones(m.shape, bool) if fd.checked is None else np.asarray(fd.checked)
    j = _judge(m, a, fd, checked, scale, rtol, fd_rtol, trust_fd, narrow)
    flat = _worst(j, checked) if m.size else 0
    index: tuple[int, ...] | None = (tuple(int(i) for i in np.unravel_index(flat, m.shape))
                                     if m.size else ())
    diff = np.abs(m - a)
    finite_diff = np.where(np.isfinite(diff), diff, np.inf)
    kinks = int(np.sum(j.verdicts["kink"]))
    row: dict[str, Any] = dict(max_abs_err=float(np.max(finite_diff, initial=0.0)),
                               max_rel_err=float(np.max(finite_diff, initial=0.0) / scale),
                               fd_err=float(np.max(np.where(finite, j.dist, np.inf),
                                                   initial=0.0) / scale),
                               kinks=kinks, where=where)
    if not m.size:
        return LeafCheck(path, m.shape, OK, AGREE, index=index, **row)
    status, verdict = _verdict(j, index, trust_fd)
    values: dict[str, Any] = dict(manual=float(m[index]), autodiff=float(a[index]),
                                  finite_diff=float(fd.central[index]))
    if status == OK:
        ma, mf, af, kink = (j.verdicts[k] for k in ("ma", "mf", "af", "kink"))
        verdict = (KINK_MULTI if np.any(kink & ~mf) else KINK_AUTO if np.any(kink & ~af) else
                   KINK if np.any(~ma & checked) else AGREE + (
                       f" ({kinks} element(s) at a kink, checked against the one-sided "
                       "interval)" if kinks else ""))
    d = fd.directions
    if d is not None and len(d.manual) and RANK[status] < RANK[FAIL]:
        dm, da = np.asarray(d.manual), np.asarray(d.autodiff)
        d_scale = max(np.max(np.abs(dm)), np.max(np.abs(da)), 1e-300)
        jd = _judge(dm, da, d, np.ones(dm.shape, bool), d_scale, rtol, fd_rtol, trust_fd,
                    narrow)
        k = _worst(jd, np.ones(dm.shape, bool))
        d_status, d_verdict = _verdict(jd, k, trust_fd)
        if RANK[d_status] > RANK[status]:
            status, verdict, index = d_status, ALONG + d_verdict, None
            values = dict(manual=float(dm[k]), autodiff=float(da[k]),
                          finite_diff=float(d.central[k]))
            row["fd_err"] = max(row["fd_err"], float(jd.dist[k]) / d_scale)
    return LeafCheck(path, m.shape, status, verdict, index=index, **values, **row)


__all__ = ["AGREE", "ALL_DIFFER", "ALONG", "AUTO_OFF", "COARSE", "DERIVATION", "FAIL", "FD_ONLY",
           "FD_PRECISION", "KINK", "KINK_AUTO", "KINK_MULTI", "KINK_OUTSIDE", "NOT_FINITE", "OK",
           "RANK", "SHARED", "SHARED_WIDEN", "SMALL", "UNVERIFIED", "WARN", "Directional",
           "FiniteDiff", "LeafCheck", "Status", "compare_leaf"]
