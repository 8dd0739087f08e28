""":func:`find_learning_rate`: the learning-rate range test of Smith (2017, "Cyclical learning
rates for training neural networks", section 3.3).

One short run whose learning rate grows exponentially, step by step, from ``min_lr`` to
``max_lr``; the loss of every step is recorded. While the rate is too small the loss barely
moves; in the useful range it falls, fastest around a good rate; past it the steps overshoot
and the loss turns up, then diverges. The rule that reads the suggestion off the curve is in
:func:`suggest` (the whole run is one compiled ``lax.scan``: :func:`make_train_epoch`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp._core import Layer, Loss, PRNGKey
from jaxbp._validate import fail, int_at_least, number_in, positive_number, require_optimizer
from jaxbp.gradients import backprop, check_net_and_loss
from jaxbp.train.epoch import make_train_epoch
from jaxbp.train.loop import checked_data

#: The smoothed loss counts as diverged once it exceeds this many times its minimum so far.
DIVERGENCE_FACTOR = 4.0


class LearningRateTest(NamedTuple):
    """What :func:`find_learning_rate` returns.

    Attributes:
      learning_rates: ``(steps,)``, the rate of each step.
      losses: ``(steps,)``, each step's objective (at the parameters it started from; may be
        nan or inf once the run diverged).
      smoothed: ``(steps,)``, the bias-corrected exponential moving average of ``losses``;
        nan from the step where the run counts as diverged.
      suggested: the rate of steepest descent of ``smoothed`` against ``log(learning_rate)``,
        or ``None`` if the curve never fell.
      range: ``(low, high)``: from where the smoothed loss has made a tenth of its fall to
        where it is lowest (Smith's bounds for a cyclical schedule; ``high`` is the largest
        rate worth trying), or ``None``.
      diverged_at: the rate at which the run diverged, or ``None`` if it never did.
    """

    learning_rates: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggested: float | None
    range: tuple[float, float] | None
    diverged_at: float | None


def _smooth(losses: np.ndarray, smoothing: float) -> tuple[np.ndarray, int]:
    """The bias-corrected moving average and the first diverged step (``len`` if none): the
    first non-finite loss, or where the average exceeds ``DIVERGENCE_FACTOR`` x its minimum."""
    out = np.full(losses.shape, np.nan)
    average, lowest = 0.0, np.inf
    for t, value in enumerate(losses):
        if not np.isfinite(value):
            return out, t
        average = smoothing * average + (1.0 - smoothing) * value
        out[t] = average / (1.0 - smoothing ** (t + 1))
        lowest = min(lowest, out[t])
        if out[t] > DIVERGENCE_FACTOR * lowest and lowest > 0:
            out[t] = np.nan
            return out, t
    return out, len(losses)


def suggest(learning_rates, losses, smoothing: float = 0.9) -> LearningRateTest:
    """Reads the range test's answer off its per-step losses. The rule:

    1. smooth: ``s_t = a_t / (1 - smoothing^(t+1))`` with ``a_t = smoothing a_{t-1} + (1 -
       smoothing) loss_t``, ``a_{-1} = 0``;
    2. divergence: the first step whose loss is not finite or whose ``s_t`` exceeds
       ``DIVERGENCE_FACTOR`` (4) times the lowest ``s`` so far; the steps from there on
       are ignored;
    3. ``high``: the rate of the lowest ``s_t`` before that;
    4. ``suggested``: the rate where ``s`` falls fastest against ``log(rate)`` (the most
       negative finite difference ``ds / dlog(rate)``) up to ``high``;
    5. ``low``: the first rate at which ``s`` has fallen by a tenth of ``s_0 - s_min``.

    With fewer than three finite steps, or no fall at all, nothing is suggested.
    """
    lrs = np.asarray(learning_rates, float)
    losses = np.asarray(losses, float)
    smoothed, end = _smooth(losses, smoothing)
    diverged_at = float(lrs[end]) if end < len(lrs) else None
    if end < 3:
        return LearningRateTest(lrs, losses, smoothed, None, None, diverged_at)
    s = smoothed[:end]
    i_min = int(np.argmin(s))
    fall = s[0] - s[i_min]
    if i_min < 1 or not fall > 0:
        return LearningRateTest(lrs, losses, smoothed, None, None, diverged_at)
    slope = np.diff(s[:i_min + 1]) / np.diff(np.log(lrs[:i_min + 1]))
    i_steep = int(np.argmin(slope)) + 1  # the step that ends the steepest stretch
    i_low = int(np.argmax(s <= s[0] - 0.1 * fall))
    return LearningRateTest(lrs, losses, smoothed, float(lrs[i_steep]),
                            (float(lrs[i_low]), float(lrs[i_min])), diverged_at)


def _order(key, n: int, batch_size: int, steps: int) -> np.ndarray:
    """``(steps, batch_size)`` example indices: whole permutations ``permutation(fold_in(key,
    e), n)``, epoch ``e = 0, 1, ...``, laid end to end and cut into batches."""
    epochs = -(-steps * batch_size // n)
    order = np.concatenate([np.asarray(jax.random.permutation(jax.random.fold_in(key, e), n))
                            for e in range(epochs)])
    return order[:steps * batch_size].reshape(steps, batch_size)


def find_learning_rate(net: Layer, loss: Loss, optimizer, x, y, *, min_lr: float = 1e-6,
                       max_lr: float = 10.0, steps: int = 100, batch_size: int = 32,
                       key: PRNGKey | int = 0, params=None, grad=backprop, l1: float = 0.0,
                       l2: float = 0.0, regularize=None,
                       smoothing: float = 0.9) -> LearningRateTest:
    """The learning-rate range test: one short run with an exponentially growing rate.

    Step ``t = 0 .. steps-1`` uses ``min_lr * (max_lr / min_lr) ** (t / (steps - 1))``,
    passed to the optimizer as a schedule (``optimizer(schedule)``), and its loss is recorded;
    :func:`suggest` reads the suggested rate and range off the curve. All ``steps`` run in
    one compiled ``lax.scan`` (past a divergence the losses are nan and ignored).

    Keys: ``key`` (an int seeds ``jax.random.key``) initialises ``params`` when none are
    given (``net.init(key, x.shape[1:])[0]``, as :func:`sweep` does for a seed); ``k_order,
    k_steps = jax.random.split(key)``: the examples are drawn in whole shuffled passes,
    ``permutation(fold_in(k_order, e))`` for pass ``e``, and ``k_steps`` is split into one
    dropout key per step (as :func:`make_train_epoch` splits it).

    Args:
      net, loss: the network and the loss; ``grad``, ``l1``, ``l2``, ``regularize`` as for
        :func:`fit`.
      optimizer: a factory ``learning_rate -> GradientTransformation`` that accepts a
        schedule (``bp.optim.adam``, ``optax.adam``, ...).
      x, y: training data.
      min_lr, max_lr: the first and the last rate, ``0 < min_lr < max_lr``.
      steps: the number of steps (at least 3); ``batch_size``: examples per step.
      params: the parameters to start from, or ``None`` (from ``key``).
      smoothing: the moving average's factor in ``[0, 1)`` (see :func:`suggest`).

    Returns:
      A :class:`LearningRateTest`: ``learning_rates``, ``losses``, ``smoothed``,
      ``suggested``, ``range``, ``diverged_at``.

    Example: ``docs/training.md``, "How do I choose a learning rate?" (run by the tests).
    """
    check_net_and_loss(net, loss, "find_learning_rate")
    where = "find_learning_rate"
    min_lr = positive_number(where, "min_lr", min_lr, "min_lr=1e-6")
    max_lr = positive_number(where, "max_lr", max_lr, "max_lr=10.0")
    if not max_lr > min_lr:
        fail(where, "max_lr", max_lr, f"larger than min_lr={min_lr:g}", f"max_lr={min_lr * 1e6:g}")
    steps = int_at_least(where, "steps", steps, 3, "steps=100")
    batch_size = int_at_least(where, "batch_size", batch_size, 1, "batch_size=32")
    smoothing = number_in(where, "smoothing", smoothing, low=0.0, high=1.0, high_open=True,
                          example="smoothing=0.9")
    if not callable(optimizer) or hasattr(optimizer, "update"):
        raise TypeError(f"{where}: optimizer={optimizer!r:.80} must be a factory learning_rate "
                        f"-> GradientTransformation (it is given the growing schedule). Fix: "
                        f"e.g. optimizer=bp.optim.adam (not bp.optim.adam(1e-3)).")
    key = jax.random.key(key) if isinstance(key, (int, np.integer)) else key
    if params is None:
        params = net.init(key, tuple(np.shape(x)[1:]))[0]
    x, y, _ = checked_data(where, net, params, x, y, None)
    ratio = max_lr / min_lr

    def schedule(count):
        return min_lr * ratio ** (jnp.asarray(count, jnp.result_type(float)) / (steps - 1))

    opt = require_optimizer(where, optimizer(schedule), "optimizer(schedule)")
    k_order, k_steps = jax.random.split(key)
    index = _order(k_order, x.shape[0], min(batch_size, x.shape[0]), steps)
    epoch = make_train_epoch(net, loss, opt, grad, l1=l1, l2=l2, regularize=regularize)
    _, _, metrics = epoch(params, opt.init(params), x[index], y[index], k_steps)
    lrs = min_lr * ratio ** (np.arange(steps) / (steps - 1))
    return suggest(lrs, np.asarray(metrics["loss"]), smoothing)


__all__ = ["DIVERGENCE_FACTOR", "LearningRateTest", "find_learning_rate", "suggest"]
