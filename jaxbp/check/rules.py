"""What autodiff actually runs: the custom rules and narrow dtypes inside a checked function.

``jax.grad`` of a function that calls a ``jax.custom_vjp`` or ``jax.custom_jvp`` runs the
*rule*, not the derivative of the function as written. So when manual and autodiff agree but
both disagree with finite differences, the likely culprit is such a rule; this module names
them by walking the function's jaxpr, nested jaxprs included (``jit``, ``scan``, ``cond``, the
rules' own primal jaxprs), for the primitives ``custom_vjp_call`` and ``custom_jvp_call`` (their
names in jax 0.10). A rule is named after its primal function and where it is defined, with
its backward / tangent rule: ``lse (custom_vjp at model.py:12; bwd lse_bwd)``. Rules defined
inside jax itself (``jax.nn.relu``, ``logaddexp``) are listed apart: they are well tested.

The same walk records floating dtypes narrower than float64 (a forward that casts to float32
internally): there finite differences at a float64 step are round-off, not evidence.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import jax
import numpy as np
from jax.extend import core as jex

CUSTOM_PRIMITIVES = ("custom_vjp_call", "custom_jvp_call", "custom_vjp_call_jaxpr")
"""The primitives of a custom rule in a jaxpr (the last one in older jax versions)."""

_JAX_DIR = os.path.dirname(jax.__file__)


class ForwardInfo(NamedTuple):
    """What a walk of the checked function's jaxpr found.

    Attributes:
      custom_rules: the user's custom rules, e.g. ``"lse (custom_vjp at m.py:4; bwd lse_bwd)"``.
      library_rules: names of custom rules defined inside jax (``relu``, ``logaddexp``).
      narrow_dtypes: floating dtypes narrower than float64 computed in (``("float32",)``).
      stop_gradients: how many ``stop_gradient`` primitives the function applies.
    """

    custom_rules: tuple[str, ...] = ()
    library_rules: tuple[str, ...] = ()
    narrow_dtypes: tuple[str, ...] = ()
    stop_gradients: int = 0

    def describe(self) -> str:
        """One line for the report, e.g. ``custom rules in the forward: lse (...); jax's own:
        relu``, or that there are none."""
        parts = []
        if self.custom_rules:
            parts.append("custom rules in the forward: " + "; ".join(self.custom_rules))
        if self.library_rules:
            parts.append("jax's own custom rules: " + ", ".join(self.library_rules))
        if not self.custom_rules:
            parts.insert(0, "no user-defined custom_vjp/custom_jvp in the forward")
        if self.stop_gradients:
            parts.append(f"stop_gradient applied {self.stop_gradients}×")
        if self.narrow_dtypes:
            parts.append("computes in " + ", ".join(self.narrow_dtypes))
        return "; ".join(parts)


def _where(debug) -> tuple[str, bool]:
    """``"file.py:12"`` of a function's debug info, and whether it lies inside jax."""
    src = getattr(debug, "func_src_info", None) or ""
    loc = src.rsplit(" at ", 1)[-1] if " at " in src else ""
    path = loc.rsplit(":", 1)[0]
    return (os.path.basename(path) + loc[len(path):] if loc else "?",
            bool(path) and os.path.abspath(path).startswith(_JAX_DIR))


def _rule(eqn) -> tuple[str, bool]:
    """The description of one custom-rule equation and whether jax defines it."""
    kind = "custom_jvp" if "jvp" in eqn.primitive.name else "custom_vjp"
    primal = eqn.params.get("call_jaxpr") or eqn.params.get("fun_jaxpr")
    debug = getattr(getattr(primal, "jaxpr", primal), "debug_info", None)
    name = getattr(debug, "func_name", None) or eqn.params.get("name") or "?"
    where, in_jax = _where(debug)
    rule_fn = eqn.params.get("bwd") if kind == "custom_vjp" else eqn.params.get("jvp_jaxpr_fun")
    rule_name = getattr(getattr(rule_fn, "debug_info", None), "func_name", None)
    role = "bwd" if kind == "custom_vjp" else "jvp"
    rule = f"; {role} {rule_name}" if rule_name and rule_name != "<unnamed function>" else ""
    return f"{name} ({kind} at {where}{rule})", in_jax


def _walk(jaxpr, found: dict, library: dict, dtypes: set, counts: list) -> None:
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            dtype = getattr(getattr(var, "aval", None), "dtype", None)
            if (dtype is not None and np.issubdtype(dtype, np.floating)
                    and np.dtype(dtype).itemsize < 8):
                dtypes.add(np.dtype(dtype).name)
        if eqn.primitive.name == "stop_gradient":
            counts[0] += 1
        if eqn.primitive.name in CUSTOM_PRIMITIVES:
            text, in_jax = _rule(eqn)
            (library if in_jax else found)[text.split(" (")[0] if in_jax else text] = None
        for sub in jex.jaxprs_in_params(eqn.params):
            _walk(sub, found, library, dtypes, counts)


def inspect_function(fn, *args) -> ForwardInfo:
    """Traces ``fn(*args)`` (no compile, no run) and walks its jaxpr; see :class:`ForwardInfo`."""
    closed = jax.make_jaxpr(fn)(*args)
    found: dict[str, None] = {}  # dicts as ordered sets
    library: dict[str, None] = {}
    dtypes: set[str] = set()
    counts = [0]
    _walk(closed.jaxpr, found, library, dtypes, counts)
    return ForwardInfo(tuple(found), tuple(library), tuple(sorted(dtypes)), counts[0])


__all__ = ["CUSTOM_PRIMITIVES", "ForwardInfo", "inspect_function"]
