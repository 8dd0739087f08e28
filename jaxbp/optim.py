"""Hand-written optimizers as ``optax.GradientTransformation``s, written from their update rules.

Every optimizer here turns the gradient ``g_t = dJ/dtheta`` at step ``t = 0, 1, ...`` into an
*update* ``u_t`` that :func:`apply_updates` adds to the parameters, ``theta <- theta + u_t``. For
plain gradient descent ``u_t = -alpha_t g_t``; the others reshape ``g_t`` first. Nothing here calls
optax's own transformations: only its ``GradientTransformation`` protocol is used, so a
hand-written optimizer and any optax optimizer plug into the same training step.

The learning rate ``alpha_t`` is a number or a schedule ``count -> alpha`` (an optax schedule, or
:func:`step_decay` / :func:`exponential_decay` from this module) evaluated at the number of
updates made so far, ``count = t`` (the first update uses ``schedule(0)``). Inside ``jit`` or
``vmap`` it may also be a traced scalar, e.g. one learning rate per run of ``bp.sweep``.

Each state is a ``NamedTuple`` whose ``count`` is that step counter (int32), so the same state
type carries through ``jit``, ``lax.scan`` and checkpoints.

Examples:
  >>> import jax.numpy as jnp, jaxbp as bp
  >>> opt = bp.optim.adam(1e-3)
  >>> params = {"w": jnp.ones(3)}
  >>> state = opt.init(params)
  >>> updates, state = opt.update({"w": jnp.ones(3)}, state, params)
  >>> params = bp.optim.apply_updates(params, updates)
"""

from __future__ import annotations

from typing import Any, NamedTuple
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jaxbp._validate import fail, number_in, positive_int, traced

Schedule = Callable[[jax.Array], jax.Array | float]  # count -> learning rate
LearningRate = float | Schedule


# --------------------------------------------------------------------------------------
# Schedules and argument checks


def _learning_rate(fname: str, learning_rate: LearningRate) -> Schedule:
    """A schedule ``count -> alpha`` from a number or a callable."""
    if callable(learning_rate):
        return learning_rate
    if traced(learning_rate):  # a sweep's learning rate, one per run (checked where made)
        if jnp.ndim(learning_rate) != 0:
            fail(fname, "learning_rate", learning_rate, "a scalar (one rate per optimizer)",
                 f"{fname}(learning_rate=0.01)")
        return lambda count: learning_rate
    if isinstance(learning_rate, (int, float)) or hasattr(learning_rate, "__float__"):
        lr = number_in(fname, "learning_rate", learning_rate, low=0.0, low_open=True,
                       example=f"{fname}(learning_rate=0.01)")
        return lambda count: lr
    raise TypeError(
        f"{fname}: learning_rate={learning_rate!r} must be a positive number or a schedule "
        f"(a callable count -> learning rate, e.g. optax.exponential_decay(...) or "
        f"bp.optim.step_decay(...)). Fix: pass learning_rate=0.01.")


def _as_float(count):
    # The default float (float64 under x64): an int32 count divided in float32 would round.
    return jnp.asarray(count, jnp.result_type(float))


def step_decay(init_value: float, decay_rate: float, step_size: int) -> Schedule:
    """Piecewise-constant decay: ``alpha(t) = init_value * decay_rate ** floor(t / step_size)``.

    Args:
      init_value: the learning rate for the first ``step_size`` updates, ``> 0``.
      decay_rate: the factor applied every ``step_size`` updates, in ``(0, 1]`` for a decay.
      step_size: how many updates each level lasts, a positive int.

    Returns:
      A schedule ``count -> alpha``, usable as any optimizer's ``learning_rate``.
    """
    init_value = number_in("step_decay", "init_value", init_value, low=0.0, low_open=True,
                           example="step_decay(0.1, 0.5, 100)")
    decay_rate = number_in("step_decay", "decay_rate", decay_rate, low=0.0, low_open=True,
                           example="step_decay(0.1, 0.5, 100)")
    step_size = positive_int("step_decay", "step_size", step_size, "step_decay(0.1, 0.5, 100)")

    def schedule(count):
        return init_value * decay_rate ** jnp.floor(_as_float(count) / step_size)

    return schedule


def exponential_decay(init_value: float, decay_rate: float, transition_steps: int) -> Schedule:
    """Smooth decay: ``alpha(t) = init_value * decay_rate ** (t / transition_steps)``.

    The rate is multiplied by ``decay_rate`` every ``transition_steps`` updates, continuously in
    between. ``optax.exponential_decay(init_value, transition_steps, decay_rate)`` is the same
    function, computed with a float32 exponent; this one uses the default float (float64 under
    ``jax_enable_x64``).
    """
    init_value = number_in("exponential_decay", "init_value", init_value, low=0.0,
                           low_open=True, example="exponential_decay(0.1, 0.5, 1000)")
    decay_rate = number_in("exponential_decay", "decay_rate", decay_rate, low=0.0,
                           low_open=True, example="exponential_decay(0.1, 0.5, 1000)")
    transition_steps = positive_int("exponential_decay", "transition_steps", transition_steps,
                                    "exponential_decay(0.1, 0.5, 1000)")

    def schedule(count):
        return init_value * decay_rate ** (_as_float(count) / transition_steps)

    return schedule


def apply_updates(params, updates):
    """``theta <- theta + u`` leaf by leaf, keeping each parameter's dtype."""
    return jax.tree_util.tree_map(
        lambda p, u: (p + u).astype(jnp.result_type(p)), params, updates)


def _count0():
    return jnp.zeros([], jnp.int32)


def _zeros(params):
    return jax.tree_util.tree_map(jnp.zeros_like, params)


def _fits(fname: str, grads, state, field: str) -> None:
    """Raises ``ValueError`` unless ``state.<field>`` (per-parameter) is shaped like ``grads``:
    an optimizer state made by ``init`` for another network's params. Static: trace time only."""
    tu = jax.tree_util
    moments = getattr(state, field)
    want = [tuple(getattr(m, "shape", ())) for m in tu.tree_leaves(moments)]
    got = [tuple(getattr(g, "shape", ())) for g in tu.tree_leaves(grads)]
    if want != got:
        raise ValueError(
            f"{fname}: the gradients have leaf shapes {got}, but the optimizer state's "
            f"{field} (from init) has {want}. Fix: opt_state = optimizer.init(params) for the "
            f"params being trained (this state looks like another network's).")


def _step(lr: Schedule, count, direction):
    """``u = -alpha_count * direction``."""
    alpha = lr(count)
    return jax.tree_util.tree_map(lambda d: (-alpha * d).astype(d.dtype), direction)


# --------------------------------------------------------------------------------------
# Optimizers


class SgdState(NamedTuple):
    """State of :func:`sgd`: only the update counter (for schedules)."""

    count: jax.Array  # type: ignore[assignment]  # optax's field name; shadows tuple.count


def sgd(learning_rate: LearningRate) -> optax.GradientTransformation:
    """Gradient descent, ``theta <- theta - alpha_t g_t``.

    Equals ``optax.sgd(learning_rate)``.
    """
    lr = _learning_rate("sgd", learning_rate)

    def init(params):
        return SgdState(count=_count0())

    def update(grads, state, params=None):
        return _step(lr, state.count, grads), SgdState(count=state.count + 1)

    return optax.GradientTransformation(init, update)


class MomentumState(NamedTuple):
    """State of :func:`momentum`: the counter and the velocity ``v`` (shaped like params)."""

    count: jax.Array  # type: ignore[assignment]  # optax's field name; shadows tuple.count
    velocity: Any


def momentum(learning_rate: LearningRate, beta: float = 0.9, *,
             nesterov: bool = False) -> optax.GradientTransformation:
    """Gradient descent with momentum (heavy ball), or Nesterov's accelerated form.

    Heavy ball::

        v_t = beta v_{t-1} + g_t,          theta <- theta - alpha_t v_t

    Nesterov (the gradient taken one velocity step ahead, rewritten at the current point)::

        v_t = beta v_{t-1} + g_t,          theta <- theta - alpha_t (g_t + beta v_t)

    with ``v_{-1} = 0``. Equals ``optax.sgd(learning_rate, momentum=beta, nesterov=nesterov)``.

    Args:
      learning_rate: ``alpha``, a positive number or a schedule.
      beta: the momentum coefficient in ``[0, 1)``.
      nesterov: use Nesterov's look-ahead form.
    """
    fname = "nesterov" if nesterov else "momentum"
    lr = _learning_rate(fname, learning_rate)
    beta = number_in(fname, "beta", beta, low=0.0, high=1.0, high_open=True,
                     example=f"{fname}(learning_rate=0.01, beta=0.9)")

    def init(params):
        return MomentumState(count=_count0(), velocity=_zeros(params))

    def update(grads, state, params=None):
        _fits(fname, grads, state, "velocity")
        v = jax.tree_util.tree_map(lambda g, v: g + beta * v, grads, state.velocity)
        direction = jax.tree_util.tree_map(lambda g, v: g + beta * v, grads, v) if nesterov else v
        return _step(lr, state.count, direction), MomentumState(state.count + 1, v)

    return optax.GradientTransformation(init, update)


def nesterov(learning_rate: LearningRate, beta: float = 0.9) -> optax.GradientTransformation:
    """Nesterov momentum: :func:`momentum` with ``nesterov=True``."""
    return momentum(learning_rate, beta, nesterov=True)


class AdagradState(NamedTuple):
    """State of :func:`adagrad`: the counter and the running sum of squared gradients ``s``."""

    count: jax.Array  # type: ignore[assignment]  # optax's field name; shadows tuple.count
    sum_of_squares: Any


def adagrad(learning_rate: LearningRate, initial_accumulator_value: float = 0.1,
            eps: float = 1e-7) -> optax.GradientTransformation:
    """Adagrad: a per-coordinate step shrinking with the gradients seen so far.

    ::

        s_t = s_{t-1} + g_t^2,     theta <- theta - alpha_t g_t / sqrt(s_t + eps)

    with ``s_{-1} = initial_accumulator_value`` (elementwise; a coordinate with ``s_t = 0`` is
    not moved). Equals ``optax.adagrad`` with the same arguments.
    """
    lr = _learning_rate("adagrad", learning_rate)
    init_acc = number_in("adagrad", "initial_accumulator_value", initial_accumulator_value,
                         low=0.0, example="adagrad(0.1, initial_accumulator_value=0.1)")
    eps = number_in("adagrad", "eps", eps, low=0.0, example="adagrad(0.1, eps=1e-7)")

    def init(params):
        s = jax.tree_util.tree_map(lambda p: jnp.full_like(p, init_acc), params)
        return AdagradState(count=_count0(), sum_of_squares=s)

    def update(grads, state, params=None):
        _fits("adagrad", grads, state, "sum_of_squares")
        s = jax.tree_util.tree_map(lambda g, s: s + g * g, grads, state.sum_of_squares)
        direction = jax.tree_util.tree_map(
            lambda g, s: jnp.where(s > 0, g / jnp.sqrt(s + eps), 0.0), grads, s)
        return _step(lr, state.count, direction), AdagradState(state.count + 1, s)

    return optax.GradientTransformation(init, update)


class RmspropState(NamedTuple):
    """State of :func:`rmsprop`: the counter and the moving average of squared gradients ``nu``."""

    count: jax.Array  # type: ignore[assignment]  # optax's field name; shadows tuple.count
    nu: Any


def rmsprop(learning_rate: LearningRate, decay: float = 0.9,
            eps: float = 1e-8) -> optax.GradientTransformation:
    """RMSprop: divide by a moving root-mean-square of recent gradients.

    ::

        nu_t = decay nu_{t-1} + (1 - decay) g_t^2
        theta <- theta - alpha_t g_t / sqrt(nu_t + eps)

    with ``nu_{-1} = 0``. Equals ``optax.rmsprop`` with the same arguments.
    """
    lr = _learning_rate("rmsprop", learning_rate)
    decay = number_in("rmsprop", "decay", decay, low=0.0, high=1.0, high_open=True,
                      example="rmsprop(1e-3, decay=0.9)")
    eps = number_in("rmsprop", "eps", eps, low=0.0, example="rmsprop(1e-3, eps=1e-8)")

    def init(params):
        return RmspropState(count=_count0(), nu=_zeros(params))

    def update(grads, state, params=None):
        _fits("rmsprop", grads, state, "nu")
        nu = jax.tree_util.tree_map(lambda g, n: decay * n + (1.0 - decay) * g * g,
                                    grads, state.nu)
        direction = jax.tree_util.tree_map(lambda g, n: g / jnp.sqrt(n + eps), grads, nu)
        return _step(lr, state.count, direction), RmspropState(state.count + 1, nu)

    return optax.GradientTransformation(init, update)


class AdamState(NamedTuple):
    """State of :func:`adam`: the counter and the first and second moment estimates."""

    count: jax.Array  # type: ignore[assignment]  # optax's field name; shadows tuple.count
    mu: Any
    nu: Any


def adam(learning_rate: LearningRate, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-8) -> optax.GradientTransformation:
    """Adam: momentum on the gradient and on its square, with bias correction.

    ::

        mu_t = b1 mu_{t-1} + (1 - b1) g_t            nu_t = b2 nu_{t-1} + (1 - b2) g_t^2
        mu_hat = mu_t / (1 - b1^(t+1))               nu_hat = nu_t / (1 - b2^(t+1))
        theta <- theta - alpha_t mu_hat / (sqrt(nu_hat) + eps)

    with ``mu_{-1} = nu_{-1} = 0``; the corrections undo the bias of starting the averages at
    zero. Equals ``optax.adam`` with the same arguments.
    """
    lr = _learning_rate("adam", learning_rate)
    b1 = number_in("adam", "b1", b1, low=0.0, high=1.0, high_open=True,
                   example="adam(1e-3, b1=0.9)")
    b2 = number_in("adam", "b2", b2, low=0.0, high=1.0, high_open=True,
                   example="adam(1e-3, b2=0.999)")
    eps = number_in("adam", "eps", eps, low=0.0, example="adam(1e-3, eps=1e-8)")

    def init(params):
        return AdamState(count=_count0(), mu=_zeros(params), nu=_zeros(params))

    def update(grads, state, params=None):
        _fits("adam", grads, state, "mu")
        mu = jax.tree_util.tree_map(lambda g, m: b1 * m + (1.0 - b1) * g, grads, state.mu)
        nu = jax.tree_util.tree_map(lambda g, n: b2 * n + (1.0 - b2) * g * g, grads, state.nu)
        t = _as_float(state.count + 1)
        c1, c2 = 1.0 - b1 ** t, 1.0 - b2 ** t
        direction = jax.tree_util.tree_map(
            lambda m, n: (m / c1.astype(m.dtype)) / (jnp.sqrt(n / c2.astype(n.dtype)) + eps),
            mu, nu)
        return _step(lr, state.count, direction), AdamState(state.count + 1, mu, nu)

    return optax.GradientTransformation(init, update)


#: Name -> optimizer factory: the choices of ``jaxbp train --optimizer``. Each registered
#: optimizer is compared with its optax counterpart by ``tests/test_optim.py``.
OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": sgd,
    "momentum": momentum,
    "nesterov": nesterov,
    "adagrad": adagrad,
    "rmsprop": rmsprop,
    "adam": adam,
}

__all__ = [
    "AdagradState",
    "AdamState",
    "MomentumState",
    "OPTIMIZERS",
    "RmspropState",
    "SgdState",
    "adagrad",
    "adam",
    "apply_updates",
    "exponential_decay",
    "momentum",
    "nesterov",
    "rmsprop",
    "sgd",
    "step_decay",
]
