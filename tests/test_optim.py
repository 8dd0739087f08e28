"""Hand-written optimizers equal their optax counterparts, step for step, in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbp as bp
from jaxbp import optim
from support import assert_trees_close

RNG = np.random.default_rng(0)
PARAMS = (bp.DenseParams(jnp.asarray(RNG.standard_normal((3, 4))),
                         jnp.asarray(RNG.standard_normal(4))),)
SCHEDULE = optax.exponential_decay(0.05, transition_steps=10, decay_rate=0.5)


def _grad(params):
    # A non-quadratic gradient field, so the trajectories depend on every update's details.
    return jax.tree_util.tree_map(lambda p: jnp.sin(3.0 * p) + 0.1 * p ** 3, params)


def _trajectory(opt, steps=100):
    """Parameters after each of ``steps`` updates, stacked on a leading axis."""

    @jax.jit
    def run(params):
        def body(carry, _):
            params, state = carry
            updates, state = opt.update(_grad(params), state, params)
            params = optax.apply_updates(params, updates)
            return (params, state), params

        return jax.lax.scan(body, (params, opt.init(params)), None, length=steps)[1]

    return run(PARAMS)


PAIRS = {
    "sgd": (lambda: optim.sgd(0.1), lambda: optax.sgd(0.1)),
    "momentum": (lambda: optim.momentum(0.05, 0.9), lambda: optax.sgd(0.05, momentum=0.9)),
    "nesterov": (lambda: optim.nesterov(0.05, 0.9),
                 lambda: optax.sgd(0.05, momentum=0.9, nesterov=True)),
    "adagrad": (lambda: optim.adagrad(0.1), lambda: optax.adagrad(0.1)),
    "rmsprop": (lambda: optim.rmsprop(0.01, decay=0.8), lambda: optax.rmsprop(0.01, decay=0.8)),
    "adam": (lambda: optim.adam(0.01), lambda: optax.adam(0.01)),
    "adam+schedule": (lambda: optim.adam(SCHEDULE), lambda: optax.adam(SCHEDULE)),
    "momentum+schedule": (lambda: optim.momentum(SCHEDULE, 0.9),
                          lambda: optax.sgd(SCHEDULE, momentum=0.9)),
}


# The same rule in optax, with the hand-written optimizer's default hyperparameters. Every entry
# of optim.OPTIMIZERS (the registry the CLI reads) is tested against its reference below.
OPTAX_REFERENCE = {
    "sgd": optax.sgd,
    "momentum": lambda lr: optax.sgd(lr, momentum=0.9),
    "nesterov": lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True),
    "adagrad": lambda lr: optax.adagrad(lr, initial_accumulator_value=0.1, eps=1e-7),
    "rmsprop": lambda lr: optax.rmsprop(lr, decay=0.9, eps=1e-8),
    "adam": lambda lr: optax.adam(lr, b1=0.9, b2=0.999, eps=1e-8),
}
REGISTERED = {f"OPTIMIZERS[{name!r}]": (lambda name=name: optim.OPTIMIZERS[name](0.02),
                                        lambda name=name: OPTAX_REFERENCE[name](0.02))
              for name in optim.OPTIMIZERS}


@pytest.mark.parametrize("name", list(PAIRS) + list(REGISTERED))
def test_equals_optax_after_1_and_100_steps(name):
    mine, theirs = (make() for make in {**PAIRS, **REGISTERED}[name])
    got, want = _trajectory(mine), _trajectory(theirs)
    for t in (0, 99):
        assert_trees_close(jax.tree_util.tree_map(lambda a, t=t: a[t], got),
                           jax.tree_util.tree_map(lambda a, t=t: a[t], want), 1e-10,
                           f"{name} after {t + 1} step(s)")
    # The trajectory really moves, so agreement is not agreement on doing nothing.
    moved = float(jnp.max(jnp.abs(got[0].w[99] - PARAMS[0].w)))
    assert moved > 1e-3, f"{name}: parameters barely moved ({moved})"


def test_a_wrong_rule_is_caught():
    # Heavy ball vs Nesterov differ only in the direction; the comparison must see that.
    got = _trajectory(optim.momentum(0.05, 0.9), steps=3)
    want = _trajectory(optax.sgd(0.05, momentum=0.9, nesterov=True), steps=3)
    with pytest.raises(AssertionError, match="relative error"):
        assert_trees_close(got, want, 1e-10, "momentum vs nesterov")


def test_schedules():
    count = jnp.arange(0, 50, dtype=jnp.int32)
    got = jax.vmap(optim.step_decay(0.1, 0.5, 10))(count)
    np.testing.assert_allclose(got, 0.1 * 0.5 ** (np.arange(50) // 10), rtol=1e-15)
    got = jax.vmap(optim.exponential_decay(0.1, 0.5, 10))(count)
    np.testing.assert_allclose(got, 0.1 * 0.5 ** (np.arange(50) / 10), rtol=1e-14)
    # optax computes the same schedules with a float32 exponent.
    np.testing.assert_allclose(got, jax.vmap(optax.exponential_decay(0.1, 10, 0.5))(count),
                               rtol=1e-6)
    np.testing.assert_allclose(
        jax.vmap(optim.step_decay(0.1, 0.5, 10))(count),
        jax.vmap(optax.exponential_decay(0.1, 10, 0.5, staircase=True))(count), rtol=1e-6)


def test_schedule_is_evaluated_at_the_update_count():
    # sgd with a step-decay rate on a constant gradient of 1: theta_t = -sum_{s<t} alpha(s).
    opt = optim.sgd(optim.step_decay(1.0, 0.5, 2))
    params, state = jnp.zeros(()), opt.init(jnp.zeros(()))
    for _ in range(5):
        updates, state = opt.update(jnp.ones(()), state)
        params = optim.apply_updates(params, updates)
    assert float(params) == -(1 + 1 + 0.5 + 0.5 + 0.25)
    assert int(state.count) == 5


def test_state_is_namedtuple_and_keeps_dtype():
    params = jnp.ones(3, jnp.float32)
    for make in (optim.sgd, optim.momentum, optim.adagrad, optim.rmsprop, optim.adam):
        opt = make(0.1)
        state = opt.init(params)
        assert hasattr(state, "_fields") and state._fields[0] == "count"
        updates, _ = opt.update(jnp.ones(3, jnp.float32), state, params)
        assert updates.dtype == jnp.float32, make.__name__


@pytest.mark.parametrize("call, match", [
    (lambda: optim.sgd(-0.1), r"sgd: learning_rate=-0.1 must be a number in \(0"),
    (lambda: optim.sgd("fast"), r"learning_rate='fast' must be a positive number or a schedule"),
    (lambda: optim.momentum(0.1, beta=1.0), r"momentum: beta=1.0 must be a number in \[0.0, 1.0\)"),
    (lambda: optim.nesterov(0.1, beta=-0.5), r"nesterov: beta=-0.5"),
    (lambda: optim.adam(1e-3, b2=1.5), r"adam: b2=1.5 .*Fix: e.g. adam\(1e-3, b2=0.999\)"),
    (lambda: optim.rmsprop(1e-3, decay=float("nan")), r"rmsprop: decay=nan"),
    (lambda: optim.adagrad(0.1, eps=-1.0), r"adagrad: eps=-1.0"),
    (lambda: optim.step_decay(0.1, 0.5, 0), r"step_decay: step_size=0 must be a positive int"),
    (lambda: optim.exponential_decay(0.1, 0.5, 2.5), r"transition_steps=2.5 must be a positive"),
])
def test_bad_arguments_are_named(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
