"""Argument checks shared by the whole library: one message style, raised early in Python.

Every check names where it runs (the function or layer), the argument, the bad value, what was
expected and a fix::

    dense: d_out=0 must be a positive int. Fix: e.g. dense(16).

``where`` may be empty (the caller's own message adds the context). Checks run on static Python
values (sizes, coefficients, names), so under ``jit`` they cost nothing per step.
"""

from __future__ import annotations

import math
from typing import Any, NoReturn
from collections.abc import Iterable

import jax
import numpy as np

from jaxbp._core import Layer, Loss


def fail(where: str, arg: str, value: Any, expected: str, example: str = "", *,
         error: type[Exception] = ValueError, detail: str = "") -> NoReturn:
    """Raises ``error`` in the library's style: ``where: arg=value must be expected. Fix: ...``.

    ``detail`` (e.g. ``" (the chance of dropping a unit)"``) follows ``expected``; ``example``
    is the fix, read after ``Fix: e.g.``.
    """
    prefix = f"{where}: " if where else ""
    fix = f" Fix: e.g. {example}." if example else ""
    raise error(f"{prefix}{arg}={value!r} must be {expected}{detail}.{fix}")


def traced(value: Any) -> bool:
    """``True`` for a value traced by ``jit``/``vmap`` (a sweep's learning rate or penalty).

    It has no Python value to check, so the functions that accept one (the optimizers'
    ``learning_rate``, the penalties' ``l1``/``l2``) skip their number check for it: the
    caller that traced it checked the concrete values it was made from."""
    return isinstance(value, jax.core.Tracer)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def int_at_least(where: str, arg: str, value: Any, low: int, example: str = "") -> int:
    """``value`` as an int, which must be ``>= low`` (``"an int >= low"``)."""
    if not _is_int(value) or value < low:
        fail(where, arg, value, f"an int >= {low}", example)
    return int(value)


def positive_int(where: str, arg: str, value: Any, example: str = "") -> int:
    """``value`` as an int ``>= 1`` (``"a positive int"``)."""
    if not _is_int(value) or value < 1:
        fail(where, arg, value, "a positive int", example)
    return int(value)


def number_in(where: str, arg: str, value: Any, *, low: float | None = None,
              high: float | None = None, low_open: bool = False, high_open: bool = False,
              expected: str = "", example: str = "", detail: str = "") -> float:
    """``value`` as a finite float within the bounds given (``None``: unbounded on that side).

    A value that is not a number at all raises ``TypeError``; NaN, inf and out-of-range values
    raise ``ValueError``. ``expected`` names the range in words (default: the interval).
    """
    if not expected:
        lo = "-inf" if low is None else f"{float(low)}"
        hi = "inf" if high is None else f"{float(high)}"
        expected = (f"a number in {'(' if low_open or low is None else '['}{lo}, {hi}"
                    f"{')' if high_open or high is None else ']'}")
    if isinstance(value, (bool, str, bytes)):  # float("0.5") would accept a string
        fail(where, arg, value, expected, example, error=TypeError, detail=detail)
    try:
        v = float(value)
    except (TypeError, ValueError):
        fail(where, arg, value, expected, example, error=TypeError, detail=detail)
    ok = math.isfinite(v)
    if low is not None:
        ok = ok and (v > low if low_open else v >= low)
    if high is not None:
        ok = ok and (v < high if high_open else v <= high)
    if not ok:
        fail(where, arg, value, expected, example, detail=detail)
    return v


def positive_number(where: str, arg: str, value: Any, example: str = "") -> float:
    """A finite float ``> 0`` (``"a positive number"``)."""
    return number_in(where, arg, value, low=0.0, low_open=True, expected="a positive number",
                     example=example)


def non_negative(where: str, arg: str, value: Any, example: str = "") -> float:
    """A finite float ``>= 0`` (``"a non-negative number"``)."""
    return number_in(where, arg, value, low=0.0, expected="a non-negative number",
                     example=example)


def probability(where: str, arg: str, value: Any, example: str = "", detail: str = "") -> float:
    """A float in ``[0, 1)`` (``"a probability in [0, 1)"``)."""
    return number_in(where, arg, value, low=0.0, high=1.0, high_open=True,
                     expected="a probability in [0, 1)", example=example, detail=detail)


def one_of(where: str, arg: str, value: Any, options: Iterable[str], what: str = "a known name",
           example: str = "") -> str:
    """``value``, which must be one of the names ``options`` (data sets, optimizers, ...):
    ``where: arg='x' is not what; expected one of [...]. Fix: e.g. example.``"""
    options = sorted(options)
    if not isinstance(value, str) or value not in options:
        prefix = f"{where}: " if where else ""
        raise ValueError(f"{prefix}{arg}={value!r} is not {what}; expected one of {options}. "
                         f"Fix: e.g. {example or arg + '=' + repr(options[0])}.")
    return value


def require_layer(where: str, value: Any, arg: str = "layer", example: str = "") -> Any:
    """``value``, which must be a jaxbp ``Layer`` (a called factory, not the factory)."""
    if not isinstance(value, Layer):
        raise TypeError(
            f"{where + ': ' if where else ''}{arg} must be a jaxbp Layer"
            f"{' (e.g. ' + example + ')' if example else ''}, got {type(value).__name__}. "
            f"Fix: call the factory, e.g. bp.relu() rather than bp.relu.")
    return value


def require_loss(where: str, value: Any, arg: str = "loss") -> Any:
    """``value``, which must be a jaxbp ``Loss`` (a called factory, not the factory)."""
    if not isinstance(value, Loss):
        raise TypeError(
            f"{where + ': ' if where else ''}{arg} must be a jaxbp Loss (e.g. bp.mse()), got "
            f"{type(value).__name__}. Fix: call the factory, bp.mse() rather than bp.mse.")
    return value


def require_optimizer(where: str, value: Any, arg: str = "optimizer") -> Any:
    """``value``, which must be an optax ``GradientTransformation`` (has ``init`` and
    ``update``)."""
    if not (hasattr(value, "init") and hasattr(value, "update")):
        raise TypeError(
            f"{where + ': ' if where else ''}{arg}={value!r:.80} is not an optax "
            f"GradientTransformation (an object with init and update). Fix: call the factory, "
            f"e.g. bp.optim.adam(1e-3) or optax.adam(1e-3).")
    return value


__all__ = ["fail", "int_at_least", "non_negative", "number_in", "one_of", "positive_int",
           "positive_number", "probability", "require_layer", "require_loss",
           "require_optimizer", "traced"]
