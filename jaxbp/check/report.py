"""The gradient-check report: one row per leaf, a verdict in words, a readable table.

The rows and their verdicts are computed by :mod:`jaxbp.check.verdicts` (re-exported here, so
``report.FD_ONLY`` and ``report.LeafCheck`` keep working); this module holds the report of a
whole check, its table and the merge of several draws.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxbp.check.rules import ForwardInfo
from jaxbp.check.verdicts import (AGREE, ALL_DIFFER, ALONG, AUTO_OFF, COARSE, DERIVATION, FAIL,
                                  FD_ONLY, FD_PRECISION, KINK, KINK_AUTO, KINK_MULTI, KINK_OUTSIDE,
                                  NOT_FINITE, OK, SHARED, SMALL, UNVERIFIED, WARN, Directional,
                                  FiniteDiff, LeafCheck, Status, compare_leaf)


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
      forward: what autodiff runs inside the checked function (its custom rules, narrow
        dtypes), set when a verdict depends on it (:data:`SHARED`); None otherwise.
    """

    subject: str
    rows: tuple[LeafCheck, ...]
    location: str | None = None
    local: GradientReport | None = None
    settings: str = ""
    forward: ForwardInfo | None = None

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
        """Hints of the located layer's failing leaves (or of this report's), most specific
        first."""
        src = self.local if self.local is not None and self.local.failures else self
        return tuple(f"{r.path}: {r.hint}" for r in src.failures if r.hint)

    def row(self, path: str) -> LeafCheck:
        """The row for ``path`` (e.g. ``"layers[0].w"`` or ``"x"``)."""
        for r in self.rows:
            if r.path == path:
                return r
        raise KeyError(f"no row {path!r}; rows are {[r.path for r in self.rows]}")

    def raise_if_failed(self) -> GradientReport:
        """Raises :class:`GradientCheckError` with the table if any leaf fails; else returns
        self."""
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
    if report.forward is not None:
        lines.append(f"{indent}  forward: {report.forward.describe()}")
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
    forward = next((rep.forward for rep in reports if rep.forward is not None), None)
    return GradientReport(subject, tuple(worst.values()),
                          located.location if located else None,
                          located.local if located else None, settings, forward)


__all__ = ["AGREE", "ALL_DIFFER", "ALONG", "AUTO_OFF", "COARSE", "DERIVATION", "FAIL", "FD_ONLY",
           "FD_PRECISION", "KINK", "KINK_AUTO", "KINK_MULTI", "KINK_OUTSIDE", "NOT_FINITE", "OK",
           "SHARED", "SMALL", "UNVERIFIED", "WARN", "Directional", "FiniteDiff",
           "GradientCheckError", "GradientReport", "LeafCheck", "Status", "compare_leaf",
           "format_report", "merge"]
