"""The gradient-check report: one row per leaf, a verdict in words, a readable table.

Three witnesses per leaf: ``manual`` (the hand-derived backward), ``autodiff`` (``jax.vjp`` of the
forward) and central finite differences, all in float64. Per element, with ``scale`` the largest
magnitude in the leaf:

- manual ≈ autodiff  when ``|m - a| <= rtol * scale``;
- a value agrees with finite differences when it lies in the interval spanned by the forward and
  backward one-sided differences, widened by ``fd_rtol * scale`` plus the estimated round-off.
  At a smooth point that interval has width ``h |f''|`` around the central difference; at a kink
  (ReLU at 0, a max tie, ``|w|`` at 0) within the step it spans the subgradients, so any valid
  subgradient passes.

An element **fails** when manual agrees with neither autodiff nor finite differences, and no kink
lies within the step. At a kink the verdict is at most a warning: where several kinks meet (ties
in overlapping pooling windows) the chain rule admits subgradients outside the one-sided
interval, and a real derivation error shows at the points off the kinks anyway.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import NamedTuple

import numpy as np


class Status(enum.StrEnum):
    """A row's status; a ``str``, so ``row.status == "warn"`` and formatting read as the value."""

    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


OK, WARN, FAIL = Status.OK, Status.WARN, Status.FAIL
_RANK = {OK: 0, WARN: 1, FAIL: 2}

AGREE = "all three agree"
KINK = ("manual and autodiff pick different subgradients at a kink; both lie in the "
        "one-sided difference interval → ok")
SMALL = ("manual and autodiff differ by more than rtol but within finite-difference "
         "accuracy → a tiny error or round-off")
FD_ONLY = "manual and autodiff agree, finite differences differ → step size, kink or precision"
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


class FiniteDiff(NamedTuple):
    """Finite differences of one leaf: central, one-sided, and the round-off estimate."""

    central: np.ndarray
    forward: np.ndarray
    backward: np.ndarray
    noise: np.ndarray


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
      index: the worst element's index.
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
        return (_RANK[self.status], max(self.max_rel_err, self.fd_err))


def compare_leaf(path: str, manual, autodiff, fd: FiniteDiff, *, rtol: float, fd_rtol: float,
                 where: str = "") -> LeafCheck:
    """Compares the three witnesses on one leaf and returns its row (without a hint)."""
    m = np.asarray(manual, np.float64)
    a = np.asarray(autodiff, np.float64)
    if m.shape != a.shape:
        return LeafCheck(path, a.shape, FAIL, f"manual has shape {m.shape}, expected {a.shape} "
                         "→ derivation error", float("inf"), float("inf"), float("inf"),
                         where=where)
    finite = np.isfinite(m)
    scale = max(np.max(np.abs(np.where(finite, m, 0.0)), initial=0.0),
                np.max(np.abs(a), initial=0.0), 1e-300)
    lo = np.minimum(fd.forward, fd.backward)
    hi = np.maximum(fd.forward, fd.backward)
    tol = fd_rtol * scale + fd.noise
    diff = np.abs(m - a)
    ma = diff <= rtol * scale
    dist_m = np.maximum(np.maximum(lo - m, m - hi), 0.0)
    mf = dist_m <= tol
    af = np.maximum(np.maximum(lo - a, a - hi), 0.0) <= tol
    kink = (hi - lo) > np.maximum(100.0 * tol, 1e-4 * scale)
    # At a kink nothing is conclusive enough to fail: a derivation error shows off the kinks.
    fail = ~finite | (~ma & ~mf & ~kink)
    warn = ~fail & np.where(kink, ~ma & ~mf, ~ma | ~af)

    err = np.where(finite, np.maximum(diff, dist_m), np.inf)
    pool = fail if fail.any() else (warn if warn.any() else np.ones_like(fail))
    flat = int(np.argmax(np.where(pool, err, -1.0))) if m.size else 0
    index = tuple(int(i) for i in np.unravel_index(flat, m.shape)) if m.size else ()

    if not m.size:
        verdict, status = AGREE, OK
    elif fail.any():
        status = FAIL
        at = index
        verdict = (NOT_FINITE if not finite[at] else DERIVATION if af[at] else ALL_DIFFER)
    elif warn.any():
        status = WARN
        at = index
        verdict = (KINK_OUTSIDE if kink[at] else FD_ONLY if ma[at] else
                   AUTO_OFF if mf[at] and not af[at] else SMALL)
    else:
        status = OK
        n_kinks = int(np.sum(kink))
        verdict = (KINK_MULTI if np.any(kink & ~mf) else KINK_AUTO if np.any(kink & ~af) else
                   KINK if np.any(~ma) else AGREE + (f" ({n_kinks} element(s) at a kink, checked "
                   "against the one-sided interval)" if n_kinks else ""))
    finite_diff = np.where(np.isfinite(diff), diff, np.inf)
    return LeafCheck(
        path, m.shape, status, verdict,
        max_abs_err=float(np.max(finite_diff, initial=0.0)),
        max_rel_err=float(np.max(finite_diff, initial=0.0) / scale),
        fd_err=float(np.max(np.where(finite, dist_m, np.inf), initial=0.0) / scale),
        index=index,
        manual=float(m[index]) if m.size else float("nan"),
        autodiff=float(a[index]) if m.size else float("nan"),
        finite_diff=float(fd.central[index]) if m.size else float("nan"),
        kinks=int(np.sum(kink)), where=where)


class GradientCheckError(AssertionError):
    """Raised by :meth:`GradientReport.raise_if_failed`; the message is the report table."""


@dataclasses.dataclass(frozen=True)
class GradientReport:
    """The result of a gradient check.

    Attributes:
      subject: what was checked (``"dense(4)"``, ``"serial(...) + mse"``).
      rows: one :class:`LeafCheck` per leaf (and ``x`` for the input gradient).
      location: for a failure, where in backward order the error first appears, e.g.
        ``"layer 3 (sigmoid): dx wrong"``; ``None`` when all is well.
      local: the report of the located layer (or loss) checked on its own, whose hints are the
        most specific.
      settings: the witnesses, step and draws used, for the header.
    """

    subject: str
    rows: tuple[LeafCheck, ...]
    location: str | None = None
    local: "GradientReport | None" = None
    settings: str = ""

    @property
    def ok(self) -> bool:
        """True when no leaf fails (warnings allowed)."""
        return all(r.status != FAIL for r in self.rows)

    @property
    def failures(self) -> tuple[LeafCheck, ...]:
        """The failing rows, every one of them."""
        return tuple(r for r in self.rows if r.status == FAIL)

    @property
    def hints(self) -> tuple[str, ...]:
        """Hints of the located layer's failing leaves (or of this report's), most specific first."""
        src = self.local if self.local is not None and self.local.failures else self
        return tuple(f"{r.path}: {r.hint}" for r in src.failures if r.hint)

    def row(self, path: str) -> LeafCheck:
        """The row for ``path`` (e.g. ``"layers[0].w"`` or ``"x"``)."""
        for r in self.rows:
            if r.path == path:
                return r
        raise KeyError(f"no row {path!r}; rows are {[r.path for r in self.rows]}")

    def raise_if_failed(self) -> "GradientReport":
        """Raises :class:`GradientCheckError` with the table if any leaf fails; else returns self."""
        if not self.ok:
            raise GradientCheckError("\n" + str(self))
        return self

    def __str__(self) -> str:
        return format_report(self)


def _num(v: float) -> str:
    return f"{v:.3e}" if np.isfinite(v) else str(v)


def format_report(report: GradientReport, indent: str = "", hints: bool = True) -> str:
    """The report as a table with a header, verdicts, location and hints."""
    n_fail = len(report.failures)
    state = "ok" if report.ok else f"FAILED ({n_fail} of {len(report.rows)} leaves)"
    lines = [f"{indent}gradient check of {report.subject}: {state}"]
    if report.settings:
        lines.append(f"{indent}  {report.settings}")
    head = ("leaf", "shape", "status", "max abs err", "max rel err", "fd err", "worst at",
            "manual", "autodiff", "finite diff", "kinks", "verdict")
    body = [(r.path, str(r.shape), r.status, _num(r.max_abs_err), _num(r.max_rel_err),
             _num(r.fd_err), str(r.index) if r.index is not None else "-",
             f"{r.manual:.6g}", f"{r.autodiff:.6g}", f"{r.finite_diff:.6g}", str(r.kinks),
             r.verdict) for r in report.rows]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]
    for cells in (head, *body):
        text = "  ".join(str(c).ljust(w) for c, w in zip(cells[:-1], widths[:-1]))
        lines.append(f"{indent}  {text}  {cells[-1]}".rstrip())
    for r in report.rows:
        if r.status != OK and r.where:
            lines.append(f"{indent}  {r.path}: worst case at {r.where}")
    if report.location:
        lines.append(f"{indent}  located: {report.location}")
    for h in report.hints if hints else ():
        lines.append(f"{indent}  hint — {h}")
    if report.local is not None and not report.local.ok:
        lines.append(f"{indent}  the located part checked on its own:")
        lines.append(format_report(report.local, indent + "    ", hints=False))
    return "\n".join(lines)


def merge(reports: list[GradientReport], subject: str, settings: str) -> GradientReport:
    """Combines the reports of several draws: the worst row per leaf; the first location."""
    worst: dict[str, LeafCheck] = {}
    for rep in reports:
        for r in rep.rows:
            if r.path not in worst or r.badness() > worst[r.path].badness():
                worst[r.path] = r
    located = next((rep for rep in reports if rep.location), None)
    return GradientReport(subject, tuple(worst.values()),
                          located.location if located else None,
                          located.local if located else None, settings)


__all__ = ["FAIL", "OK", "WARN", "FiniteDiff", "GradientCheckError", "GradientReport", "LeafCheck",
           "Status", "compare_leaf", "format_report", "merge"]
