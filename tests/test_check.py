"""The gradient checker itself: report, verdicts, kinks, float32 models, x64 scoping, errors,
speed. (Seeded wrong derivations: test_check_mutations.py; ``jaxbp check``: test_check_cli.py.)"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp as bp
from jaxbp.check import report as _report


def _layer(name, forward, backward, out=lambda s: s):
    return bp.Layer(lambda key, s: ((), out(tuple(s))), forward, backward, name)


def max_last():
    """``y = max(x, axis=-1)``; backward sends dy to the *first* maximum (autodiff splits ties)."""
    def forward(params, x, *, key=None):
        return jnp.max(x, axis=-1, keepdims=True), x

    def backward(params, x, dy):
        return (), jax.nn.one_hot(jnp.argmax(x, axis=-1), x.shape[-1], dtype=x.dtype) * dy
    return _layer("max_last", forward, backward, lambda s: (*s[:-1], 1))


MLP = bp.serial(bp.dense(5), bp.relu(), bp.dense(3), bp.tanh(), bp.dense(2))
MSE = bp.mse()


def _mlp_data(dtype, batch=4, seed=0, zero_rows=1):
    params, _ = MLP.init(jax.random.key(seed), (3,))
    params = jax.tree_util.tree_map(lambda a: a.astype(dtype), params)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 3))
    x[:zero_rows] = 0.0  # with zero biases: every first-layer pre-activation exactly at the kink
    return params, jnp.asarray(x, dtype), jnp.asarray(rng.standard_normal((batch, 2)), dtype)


# --------------------------------------------------------------------------------------
# The report.


def test_report_rows_paths_table_and_raise():
    params, x, y = _mlp_data(jnp.float64)
    report = bp.check_gradients(MLP, MSE, params, x, y)
    assert report.ok and report.location is None and not report.failures
    assert [r.path for r in report.rows] == ["layers[0].w", "layers[0].b", "layers[2].w",
                                             "layers[2].b", "layers[4].w", "layers[4].b"]
    assert report.row("layers[2].w").shape == (5, 3)
    for r in report.rows:
        assert r.status == "ok" and r.max_rel_err < 1e-10 and r.fd_err < 1e-6
        assert np.isclose(r.manual, r.autodiff, rtol=1e-10, atol=1e-14)
    text = str(report)
    for word in ("leaf", "shape", "max abs err", "max rel err", "worst at", "manual", "autodiff",
                 "finite diff", "verdict", "layers[4].b", "all three agree"):
        assert word in text
    assert report.raise_if_failed() is report
    assert bp.assert_gradients_match(MLP, MSE, params, x, y).ok


def test_failure_raises_with_the_table():
    wrong = bp.tanh()._replace(backward=lambda p, y, dy: ((), dy * (1 + y * y)))
    net = bp.serial(bp.dense(3), wrong, bp.dense(2))
    params, _ = net.init(jax.random.key(0), (3,))
    x, y = jnp.ones((2, 3)), jnp.zeros((2, 2))
    report = bp.check_gradients(net, MSE, params, x, y)
    assert not report.ok
    with pytest.raises(bp.GradientCheckError, match=r"(?s)FAILED.*layers\[0\]\.w.*derivation "
                       r"error.*located: layer 1 \(tanh\): dx wrong"):
        report.raise_if_failed()
    with pytest.raises(AssertionError, match=r"layer 1 \(tanh\): dx wrong"):
        bp.assert_gradients_match(net, MSE, params, x, y)
    with pytest.raises(KeyError, match="no row 'nope'"):
        report.row("nope")


def test_straight_through_gradient_is_not_the_derivative_so_it_fails():
    # Straight-through rounding: the value is round(x) (flat), the derivative passes through.
    # Manual and autodiff agree on 1, finite differences see 0 with no kink within the step:
    # the gradient is not the derivative of the forward (issue 11 made this a failure; it was
    # a warning, FD_ONLY), and the report names what autodiff ran instead.
    layer = _layer("round_st", lambda p, x, *, key=None: (
        x + jax.lax.stop_gradient(jnp.round(x) - x), None), lambda p, c, dy: ((), dy))
    x = jnp.asarray([[0.2, 1.3, -2.1]])
    report = bp.check_layer(layer, inputs=x)
    assert not report.ok and report.row("x").verdict == _report.SHARED
    assert report.forward.stop_gradients == 1 and not report.forward.custom_rules
    assert "stop_gradient applied 1×" in str(report)


def test_verdict_when_finite_differences_alone_differ_is_a_warning_at_low_precision():
    # A forward computing in float32: finite differences at a float64 step are round-off.
    def f(x):
        return jnp.sin(3 * x.astype(jnp.float32)).astype(x.dtype)

    layer = _layer("sin_float32", lambda p, x, *, key=None: (f(x), x),
                   lambda p, x, dy: ((), jax.vjp(f, x)[1](dy)[0]))
    report = bp.check_layer(layer, inputs=jnp.asarray([[0.2, 1.3, -2.1, 0.7]]))
    assert report.ok and report.row("x").status == "warn", report
    assert report.row("x").verdict == _report.FD_PRECISION
    assert report.forward.narrow_dtypes == ("float32",)


def test_verdict_when_autodiff_alone_differs():
    # y = x + stop_gradient(x) is 2x; autodiff sees 1, the hand-derived 2 matches the values.
    layer = _layer("twice_sg", lambda p, x, *, key=None: (x + jax.lax.stop_gradient(x), None),
                   lambda p, c, dy: ((), 2.0 * dy))
    report = bp.check_layer(layer, (3,), batch_sizes=(2,), draws=1)
    assert report.ok and report.row("x").verdict == _report.AUTO_OFF


# --------------------------------------------------------------------------------------
# Kinks: within the step of a non-differentiable point is not a failure.


def test_relu_exactly_at_zero_batch_one():
    x = jnp.asarray([[0.0, 1.5, 0.0, -0.3]])
    report = bp.check_layer(bp.relu(), inputs=[x, jnp.zeros((1, 4))])
    row = report.row("x")
    assert report.ok and row.kinks >= 2 and "kink" in row.verdict


def test_max_ties_manual_and_autodiff_choose_different_subgradients():
    x = jnp.asarray([[1.0, 1.0, 0.0], [2.0, -0.5, 2.0], [0.3, 0.1, 0.2]])
    report = bp.check_layer(max_last(), inputs=x)
    row = report.row("x")
    assert report.ok and row.verdict == _report.KINK and row.max_rel_err > 0.1 and row.kinks == 4


def pair_max():
    """``y_j = max(x_j, x_{j+1})``: overlapping windows. Ties go to the right-hand element;
    autodiff (``jnp.maximum``) splits them."""
    def forward(params, x, *, key=None):
        return jnp.maximum(x[:, :-1], x[:, 1:]), x

    def backward(params, x, dy):
        right = (x[:, 1:] >= x[:, :-1]).astype(x.dtype) * dy
        left = dy - right
        pad = jnp.zeros_like(x[:, :1])
        return (), jnp.concatenate([left, pad], 1) + jnp.concatenate([pad, right], 1)
    return _layer("pair_max", forward, backward, lambda s: (s[0] - 1,))


def test_several_kinks_meeting_at_one_point_are_not_failures():
    # x_1 is the tied maximum of two windows: one-sided differences see only the sum of both.
    ties = jnp.asarray([[1.0, 1.0, 1.0, -2.0]])
    report = bp.check_layer(pair_max(), inputs=[ties] * 6)
    row = report.row("x")
    assert report.ok and row.kinks >= 2 and "kink" in row.verdict, report
    assert row.status == "warn" and row.verdict == _report.KINK_OUTSIDE, report
    wrong = pair_max()._replace(backward=lambda p, x, dy: ((), jnp.concatenate(
        [dy, jnp.zeros_like(x[:, :1])], 1)))
    assert not bp.check_layer(wrong, (4,), batch_sizes=(2,), draws=1).ok  # off the kinks


def test_l1_penalty_with_weights_exactly_zero():
    params, x, y = _mlp_data(jnp.float64)
    w0 = params[0].w.at[0, :].set(0.0)
    params = (params[0]._replace(w=w0), *params[1:])
    report = bp.check_gradients(MLP, MSE, params, x, y, l1=0.1)
    assert report.ok and report.row("layers[0].w").kinks >= 5


def test_a_wrong_derivative_is_still_caught_next_to_kinks():
    wrong = bp.relu()._replace(backward=lambda p, x, dy: ((), dy * (x < 0).astype(dy.dtype)))
    x = jnp.asarray([[0.0, 1.5, -0.7, 2.0]])
    report = bp.check_layer(wrong, inputs=x)
    assert not report.ok and report.row("x").index in ((0, 1), (0, 2), (0, 3))


# --------------------------------------------------------------------------------------
# No false failures: float32 models, inputs at kinks, batch size 1, many draws.


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_correct_network_passes_over_many_draws_at_kinks(dtype):
    for seed in range(6):
        for batch in (1, 4):
            params, x, y = _mlp_data(dtype, batch=batch, seed=seed)
            report = bp.check_gradients(MLP, MSE, params, x, y, l2=0.01)
            assert report.ok, report
            # float32 models are checked in float64: agreement to float64 precision.
            assert max(r.max_rel_err for r in report.rows) < 1e-10, report


def test_float32_layer_checked_in_float64():
    report = bp.check_layer(bp.dense(3, dtype=jnp.float32), (4,), draws=3)
    assert report.ok and all(r.max_rel_err < 1e-12 for r in report.rows)


def test_a_hand_made_layer_with_unhashable_fields_is_checked_uncached():
    good = bp.serial(bp.dense(2), bp.tanh())
    layer = good._replace(sublayers=list(good.sublayers))  # a list: not hashable
    assert bp.check_layer(layer, (3,), batch_sizes=(2,), draws=1).ok
    wrong = layer._replace(sublayers=[good.sublayers[0], bp.tanh()._replace(
        backward=lambda p, y, dy: ((), -dy * (1 - y * y)))])
    wrong = wrong._replace(backward=bp.serial(*wrong.sublayers).backward)
    report = bp.check_layer(wrong, (3,), batch_sizes=(2,), draws=1)
    assert report.location == "layer 1 (tanh): dx wrong", report


# --------------------------------------------------------------------------------------
# x64 is scoped to the check.


def test_x64_is_switched_on_only_inside_the_check():
    jax.config.update("jax_enable_x64", False)
    try:
        layer = bp.dense(3)
        params, _ = layer.init(jax.random.key(0), (2,))
        assert params.w.dtype == jnp.float32
        report = bp.check_layer(layer, (2,), params=params, batch_sizes=(2,), draws=1)
        assert report.ok and report.row("w").max_rel_err < 1e-12  # float64 witnesses
        assert not jax.config.jax_enable_x64 and jnp.zeros(1).dtype == jnp.float32
        broken = layer._replace(backward=lambda p, c, dy: dy)
        with pytest.raises(TypeError, match=r"must return a pair \(dparams, dx\)"):
            bp.check_layer(broken, (2,), batch_sizes=(2,), draws=1)
        assert not jax.config.jax_enable_x64  # restored after an error too
    finally:
        jax.config.update("jax_enable_x64", True)
    assert jax.config.jax_enable_x64


# --------------------------------------------------------------------------------------
# Speed: a 3-layer MLP with ~10^4 parameters, finite differences over every one.


def test_mlp_with_ten_thousand_parameters_checks_in_seconds():
    net = bp.serial(bp.dense(100), bp.relu(), bp.dense(50), bp.tanh(), bp.dense(10))
    params, _ = net.init(jax.random.key(0), (50,))
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), params)
    assert bp.count_params(params) == 10660
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((32, 50)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, 32))
    t0 = time.perf_counter()
    report = bp.check_gradients(net, bp.softmax_cross_entropy(), params, x, y)
    elapsed = time.perf_counter() - t0
    print(f"check_gradients, 10660 parameters, batch 32: {elapsed:.2f} s")
    assert report.ok, report
    assert all(r.fd_err < 1e-6 for r in report.rows)  # every element was finite-differenced
    assert elapsed < 20.0  # ~2 s on an idle 2-core CPU; generous for a shared, busy machine


# --------------------------------------------------------------------------------------
# Bad input: clear errors naming the argument.


def test_errors_name_the_argument_and_the_fix():
    with pytest.raises(TypeError, match=r"layer must be a jaxbp Layer.*bp\.relu\(\) rather"):
        bp.check_layer(bp.relu, (3,))
    with pytest.raises(ValueError, match=r"give input_shape"):
        bp.check_layer(bp.relu())
    with pytest.raises(TypeError, match=r"input_shape=3 is an int.*\(3,\)"):
        bp.check_layer(bp.relu(), 3)
    with pytest.raises(ValueError, match=r"batch_sizes=\(0, 2\) must be positive ints"):
        bp.check_layer(bp.relu(), (3,), batch_sizes=(0, 2))
    with pytest.raises(ValueError, match=r"draws=0 must be a positive int"):
        bp.check_layer(bp.relu(), (3,), draws=0)
    with pytest.raises(ValueError, match=r"rtol=-1 must be a positive number"):
        bp.check_layer(bp.relu(), (3,), rtol=-1)
    with pytest.raises(TypeError, match=r"key='a' must be an int seed or a jax.random.key"):
        bp.check_layer(bp.relu(), (3,), key="a")
    with pytest.raises(TypeError, match=r"loss must be a jaxbp Loss.*bp\.mse\(\)"):
        bp.check_gradients(MLP, bp.mse, (), jnp.ones((1, 3)), jnp.ones((1, 2)))
    with pytest.raises(TypeError, match=r"l2='a' must be a non-negative number"):
        bp.check_gradients(MLP, MSE, (), jnp.ones((1, 3)), jnp.ones((1, 2)), l2="a")
    with pytest.raises(TypeError, match=r"check_loss: loss must be a jaxbp Loss"):
        bp.check_loss(bp.mse, (3,))
