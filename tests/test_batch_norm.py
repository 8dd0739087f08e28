"""Batch norm and non-trainable layer state: the hand-derived backward in both modes against
jax.vjp (float64, random shapes; float32), the running statistics against their definition,
seeded wrong derivations caught and named, and the state threaded through serial, residual,
branches, backprop/autodiff, the checker, the training programs, fit, sweep and checkpoints."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxbp as bp
from jaxbp import cases
from jaxbp.layers import BatchNormEvalCache, BatchNormParams, BatchNormState
from support import assert_trees_close

KEY = jax.random.key(0)


def assert_close_floored(got, want, rtol, what):
    """:func:`assert_trees_close`, with each leaf's scale at least 1e-3 of the largest leaf's:
    the bias of a layer that feeds batch norm has gradient zero (the mean it adds is taken out
    again), so its computed gradient is round-off, which is relative to the other leaves."""
    assert_trees_close(got, want, np.inf, what)  # structure, shapes, finite
    pairs = [(np.asarray(g, np.float64), np.asarray(w, np.float64)) for g, w in
             zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want))]
    largest = max(np.max(np.abs(w), initial=0.0) for _, w in pairs)
    worst = max(np.max(np.abs(g - w), initial=0.0)
                / max(np.max(np.abs(w), initial=0.0), 1e-3 * largest, 1e-300) for g, w in pairs)
    assert worst <= rtol, f"{what}: relative error {worst:.3e} > {rtol:.1e}"


def _bn_at(shape, seed, dtype=jnp.float64):
    """A batch norm layer, params with random gamma/beta, x of ``shape`` and a random state."""
    rng = np.random.default_rng(seed)
    bn = bp.batch_norm(momentum=0.8)
    c = shape[-1]
    params = BatchNormParams(jnp.asarray(rng.uniform(0.5, 2.0, c), dtype),
                             jnp.asarray(rng.standard_normal(c), dtype))
    x = jnp.asarray(rng.standard_normal(shape) * 2.0 + 1.0, dtype)
    state = BatchNormState(jnp.asarray(rng.standard_normal(c), dtype),
                           jnp.asarray(rng.uniform(0.5, 2.0, c), dtype))
    dy = jnp.asarray(rng.standard_normal(shape), dtype)
    return bn, params, x, state, dy


def _vjp_pair(bn, params, x, dy, **mode):
    _, cache = bn.forward(params, x, **mode)
    got = bn.backward(params, cache, dy)
    _, vjp = jax.vjp(lambda p, x_: bn.forward(p, x_, **mode)[0], params, x)
    return got, vjp(dy)


@settings(max_examples=8)
@given(batch=st.integers(1, 5), dims=st.lists(st.integers(1, 5), min_size=1, max_size=3),
       seed=st.integers(0, 2**16), training=st.booleans())
def test_backward_matches_vjp_random_shapes(batch, dims, seed, training):
    """Dense ``(batch, c)`` and image-like ``(batch, h, w, c)`` inputs, odd sizes and batch 1,
    training (batch statistics) and evaluation (running statistics) mode."""
    bn, params, x, state, dy = _bn_at((batch, *dims), seed)
    # Under jit, both in one program: one compile per drawn shape where eagerly every
    # primitive compiled anew for it (the eager path: test_float32_path).
    if training:
        got, want = jax.jit(lambda p, x, dy: _vjp_pair(bn, p, x, dy, key=KEY))(params, x, dy)
    else:
        got, want = jax.jit(lambda p, x, dy, s: _vjp_pair(bn, p, x, dy, state=s))(params, x,
                                                                                  dy, state)
    assert_trees_close(got, want, 1e-10, f"batch_norm {x.shape} training={training}")


@pytest.mark.parametrize("shape", [(6, 3, 3, 4), (16, 5)], ids=["nhwc", "dense"])
@pytest.mark.parametrize("training", [True, False])
def test_float32_path(training, shape):
    bn, params, x, state, dy = _bn_at(shape, 1, jnp.float32)
    got, want = _vjp_pair(bn, params, x, dy, **({"key": KEY} if training else {"state": state}))
    assert jax.tree_util.tree_leaves(got)[0].dtype == jnp.float32
    assert_trees_close(got, want, 1e-5, "batch_norm float32")


def test_forward_and_running_statistics_follow_the_definition():
    bn, params, x, state, _ = _bn_at((7, 2, 3, 4), 2)
    rows = np.asarray(x).reshape(-1, 4)
    mean, var = rows.mean(0), rows.var(0)  # the biased variance
    y, cache = bn.forward(params, x, key=KEY)
    want = (np.asarray(x) - mean) / np.sqrt(var + 1e-5) * np.asarray(params.gamma) \
        + np.asarray(params.beta)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    new = bn.state.update(state, cache)
    np.testing.assert_allclose(new.mean, 0.8 * np.asarray(state.mean) + 0.2 * mean, rtol=1e-13)
    np.testing.assert_allclose(new.var, 0.8 * np.asarray(state.var) + 0.2 * var, rtol=1e-13)
    # evaluation: the running statistics, and no update
    y_eval, cache_eval = bn.forward(params, x, state=state)
    want = (np.asarray(x) - np.asarray(state.mean)) / np.sqrt(np.asarray(state.var) + 1e-5) \
        * np.asarray(params.gamma) + np.asarray(params.beta)
    np.testing.assert_allclose(y_eval, want, rtol=1e-12, atol=1e-12)
    assert bn.state.update(state, cache_eval) is state
    # a fresh network starts at mean 0, variance 1
    fresh = bn.state.init(params)
    assert fresh.mean.tolist() == [0.0] * 4 and fresh.var.tolist() == [1.0] * 4


# --------------------------------------------------------------------------------------
# Seeded wrong derivations: each caught by the checker and named to its leaf


def _slipped(backward_of):
    """batch_norm whose training-mode backward is ``backward_of(params, cache, dy, rows)``."""
    bn = bp.batch_norm()

    def backward(params, cache, dy):
        return backward_of(params, cache, dy, tuple(range(dy.ndim - 1)))

    return bn._replace(backward=backward)


def _mean(v, rows):
    return jnp.mean(v, axis=rows, keepdims=True)


def _grads(dy, xhat, rows):
    return BatchNormParams(jnp.sum(dy * xhat, axis=rows), jnp.sum(dy, axis=rows))


def _no_mean_path(params, cache, dy, rows):
    g = dy * params.gamma[None, None, None]  # forgets the path through mu
    dx = cache.r[None, None, None] * (g - cache.xhat * _mean(g * cache.xhat, rows))
    return _grads(dy, cache.xhat, rows), dx


def _no_variance_path(params, cache, dy, rows):
    g = dy * params.gamma[None, None, None]  # forgets the path through var
    dx = cache.r[None, None, None] * (g - _mean(g, rows))
    return _grads(dy, cache.xhat, rows), dx


def _gamma_of_raw_x(params, cache, dy, rows):
    g = dy * params.gamma[None, None, None]
    r, mean = cache.r[None, None, None], cache.mean[None, None, None]
    dx = r * (g - _mean(g, rows) - cache.xhat * _mean(g * cache.xhat, rows))
    raw = cache.xhat / r + mean  # dgamma from x instead of xhat
    return _grads(dy, raw, rows), dx


def _unbiased_variance(params, cache, dy, rows):
    n = np.prod([dy.shape[a] for a in rows])  # r from the unbiased variance (n - 1)
    r = 1.0 / jnp.sqrt(cache.var[None, None, None] * n / (n - 1) + 1e-5)
    g = dy * params.gamma[None, None, None]
    dx = r * (g - _mean(g, rows) - cache.xhat * _mean(g * cache.xhat, rows))
    return _grads(dy, cache.xhat, rows), dx


@pytest.mark.parametrize("slip, leaf", [(_no_mean_path, "x"), (_no_variance_path, "x"),
                                        (_gamma_of_raw_x, "gamma"), (_unbiased_variance, "x")],
                         ids=["no_mean_path", "no_variance_path", "gamma_of_raw_x",
                              "unbiased_variance"])
def test_wrong_batch_norm_derivations_are_caught_and_named(slip, leaf):
    report = bp.check_layer(_slipped(slip), (2, 2, 3), training=True, batch_sizes=(3,), draws=1)
    assert not report.ok
    assert [r.path for r in report.failures] == [leaf], str(report)


def test_a_slip_inside_a_residual_block_is_located_there():
    block = bp.residual(bp.serial(bp.conv2d(2, 3), _slipped(_no_variance_path), bp.relu()))
    net = bp.serial(bp.conv2d(2, 3), bp.batch_norm(), bp.relu(), block, bp.flatten(),
                    bp.dense(3))
    params, _ = net.init(KEY, (3, 3, 1))
    x = jax.random.normal(jax.random.key(1), (4, 3, 3, 1))
    report = bp.check_gradients(net, bp.softmax_cross_entropy(), params, x, jnp.arange(4) % 3,
                                key=jax.random.key(2))
    assert not report.ok
    assert report.location.startswith("layer 3 (residual(") and "layer 1 (batch_norm): dx wrong" \
        in report.location, report.location


def test_a_wrong_running_statistics_update_fails_jaxbp_checks_case():
    bn = bp.batch_norm(momentum=0.8)
    backwards = bn.state._replace(update=lambda s, c: s if isinstance(c, BatchNormEvalCache)
                                  else BatchNormState(0.2 * s.mean + 0.8 * c.mean,
                                                      0.2 * s.var + 0.8 * c.var))  # swapped
    case = cases.LayerCase("slip", lambda: bn._replace(state=backwards), (3,), training=True,
                           state_update=cases.running_statistics(0.8))
    report = cases.check_case(case, draws=1)
    assert not report.ok
    assert {r.path for r in report.failures} == {"state.mean", "state.var"}


# --------------------------------------------------------------------------------------
# State through the combinators, gradients and the checker

NET = bp.serial(bp.dense(4), bp.batch_norm(), bp.relu(),
                bp.residual(bp.serial(bp.dense(4), bp.batch_norm())),
                bp.fan_out(2), bp.branches(bp.batch_norm(), bp.identity()), bp.add(),
                bp.dense(3))


@pytest.fixture(scope="module")
def point():
    with jax.enable_x64(True):
        params, _ = NET.init(KEY, (3,))
        x = jax.random.normal(jax.random.key(1), (6, 3), jnp.float64)
        y = jnp.arange(6) % 3
        yield params, x, y, bp.init_layer_state(NET, params)


def test_state_has_one_entry_per_sublayer(point):
    params, _, _, state = point
    assert state[0] is None and isinstance(state[1], BatchNormState)
    assert isinstance(state[3][0][1], BatchNormState)  # residual -> its serial -> batch_norm
    assert isinstance(state[5][0], BatchNormState) and state[5][1] is None  # branches
    assert bp.init_layer_state(bp.serial(bp.dense(2), bp.relu()), params) is None


def test_backprop_and_autodiff_agree_on_gradients_and_state(point):
    params, x, y, state = point
    with jax.enable_x64(True):
        for key in (jax.random.key(3), None):
            v1, g1, s1 = bp.backprop(NET, bp.softmax_cross_entropy())(params, x, y, key=key,
                                                                       state=state)
            v2, g2, s2 = bp.autodiff(NET, bp.softmax_cross_entropy())(params, x, y, key=key,
                                                                      state=state)
            assert_close_floored((v1, g1, s1), (v2, g2, s2), 1e-10, f"key={key}")
            moved = not np.allclose(s1[1].mean, state[1].mean)
            assert moved == (key is not None), "training moves the state, evaluation does not"
        # without state= the gradient function is unchanged: (value, grads)
        assert len(bp.backprop(NET, bp.softmax_cross_entropy())(params, x, y, key=KEY)) == 2


@pytest.mark.parametrize("key", [jax.random.key(4), None], ids=["training", "evaluation"])
def test_checker_passes_a_network_with_state_in_both_modes(point, key):
    params, x, y, state = point
    report = bp.check_gradients(NET, bp.softmax_cross_entropy(), params, x, y, key=key,
                                state=jax.tree_util.tree_map(lambda a: a + 0.5, state))
    assert report.ok, str(report)


def test_second_order_check_passes_batch_norm_in_training_mode(point):
    params, x, y, _ = point
    report = bp.check_hvp(NET, bp.softmax_cross_entropy(), params, x, y, key=jax.random.key(5))
    assert report.ok, str(report)


def test_evaluation_without_state_is_refused_clearly(point):
    params, x, _, _ = point
    with pytest.raises(ValueError, match=r"serial layer 1 \(batch_norm\): evaluation mode "
                                         r"\(key=None\) normalises with the running statistics"):
        NET.forward(params, x)
    with pytest.raises(ValueError, match=r"evaluate: .* has state .* layer_state was not given"):
        bp.evaluate(NET, bp.softmax_cross_entropy(), params, x, jnp.arange(6) % 3)


def test_a_combinator_that_does_not_thread_state_is_refused():
    inner = bp.serial(bp.dense(2), bp.batch_norm())
    mine = bp.Layer(inner.init, lambda p, x, key=None: inner.forward(p, x, key=key),
                    inner.backward, "my_block", (inner,))
    with pytest.raises(TypeError, match=r"my_block holds serial\(dense\(2\), batch_norm\), a "
                                        r"layer with state .* declares no state rule"):
        bp.backprop(bp.serial(mine, bp.dense(1)), bp.mse())


def test_summary_and_custom_vjp_of_a_network_with_state(point):
    params, x, _, state = point
    text = str(bp.summary(NET, (3,)))
    assert "batch_norm" in text and "total:" in text
    apply = bp.as_custom_vjp(NET)
    with jax.enable_x64(True):
        g = jax.grad(lambda p: jnp.sum(apply(p, x, None, state) ** 2))(params)
        want = jax.grad(lambda p: jnp.sum(NET.forward(p, x, state=state)[0] ** 2))(params)
    assert_trees_close(g, want, 1e-10, "as_custom_vjp in evaluation mode")


# --------------------------------------------------------------------------------------
# Training programs, fit, sweep and checkpoints

X = np.random.default_rng(0).standard_normal((37, 3)).astype(np.float32)
Y = (X[:, 0] > 0).astype(np.int32) + (X[:, 1] > 0)
SMALL = bp.serial(bp.dense(4), bp.batch_norm(), bp.relu(), bp.dense(3))
LOSS = bp.softmax_cross_entropy()


def _manual_steps(params, opt, state, batches, keys):
    """The reference: backprop with state, then the optimizer, step by step in Python."""
    grad_fn = bp.backprop(SMALL, LOSS)
    opt_state = opt.init(params)
    for (xb, yb), k in zip(batches, keys):
        _, grads, state = grad_fn(params, xb, yb, key=k, state=state)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = jax.tree_util.tree_map(jnp.add, params, updates)
    return params, state


def test_train_step_and_epoch_carry_the_state():
    opt = bp.optim.momentum(0.1)
    params, _ = SMALL.init(KEY, (3,))
    state = bp.init_layer_state(SMALL, params)
    xs, ys = X[:32].reshape(4, 8, 3), Y[:32].reshape(4, 8)
    keys = list(jax.random.split(jax.random.key(5), 4))
    want_p, want_s = _manual_steps(params, opt, state, zip(xs, ys), keys)
    epoch = bp.make_train_epoch(SMALL, LOSS, opt)
    p, _, metrics, s = epoch(params, opt.init(params), xs, ys, jax.random.key(5), state=state)
    assert metrics["loss"].shape == (4,)
    assert_close_floored((p, s), (want_p, want_s), 1e-5, "epoch vs steps")
    step = bp.make_train_step(SMALL, LOSS, opt)
    p, o, s = params, opt.init(params), state
    for (xb, yb), k in zip(zip(xs, ys), keys):
        p, o, _, s = step(p, o, xb, yb, k, state=s)
    assert_close_floored((p, s), (want_p, want_s), 1e-5, "step vs manual")


def test_fit_trains_full_batches_and_returns_the_state():
    opt = bp.optim.adam(1e-2)
    params, _ = SMALL.init(KEY, (3,))
    result = bp.fit(SMALL, LOSS, opt, params, X, Y, key=1, epochs=2, batch_size=8,
                    progress=False)
    assert int(result.state.step) == 2 * (37 // 8)  # the 5 left over sit each epoch out
    state = result.layer_state
    assert not np.allclose(state[1].mean, 0.0) and result.state.layer_state is state
    ev = bp.evaluate(SMALL, LOSS, result.params, X, Y, layer_state=state)
    assert ev["loss"] == pytest.approx(result.history["train_loss"][-1], rel=1e-6)
    with pytest.raises(ValueError, match=r"batch_size=64 exceeds the 37 training examples.*"
                                         r"full batches only"):
        bp.fit(SMALL, LOSS, opt, params, X, Y, key=1, epochs=1, batch_size=64, progress=False)


def test_sweep_runs_equal_fit_with_state():
    params, _ = SMALL.init(jax.random.key(0), (3,))
    swept = bp.sweep(SMALL, LOSS, bp.optim.sgd, X, Y, epochs=2, batch_size=8,
                     learning_rates=[0.05, 0.2], progress=False)
    alone = bp.fit(SMALL, LOSS, bp.optim.sgd(0.2), params, X, Y, key=0, epochs=2, batch_size=8,
                   progress=False)
    assert_close_floored((swept.params_of(1), swept.layer_state_of(1)),
                         (alone.params, alone.layer_state), 1e-5, "sweep run vs fit")


def test_checkpoints_hold_the_state_and_resume_bit_identically(tmp_path):
    opt = bp.optim.adam(1e-2)
    params, _ = SMALL.init(KEY, (3,))
    whole = bp.fit(SMALL, LOSS, opt, params, X, Y, key=2, epochs=3, batch_size=8,
                   progress=False, patience=5)
    bp.fit(SMALL, LOSS, opt, params, X, Y, key=2, epochs=2, batch_size=8, progress=False,
           patience=5, checkpoint_dir=tmp_path)
    resumed = bp.fit(SMALL, LOSS, opt, params, X, Y, key=2, epochs=3, batch_size=8,
                     progress=False, patience=5, checkpoint_dir=tmp_path, resume=True)
    assert_trees_close((resumed.params, resumed.layer_state),
                       (whole.params, whole.layer_state), 0.0, "resumed vs uninterrupted")
    run = bp.train.load_run(tmp_path, params, opt, layer_state=bp.init_layer_state(SMALL, params))
    assert_trees_close(run.layer_state, whole.layer_state, 0.0, "load_run")


def test_a_state_free_checkpoint_is_written_as_before(tmp_path):
    net = bp.serial(bp.dense(2), bp.relu(), bp.dense(3))
    params, _ = net.init(KEY, (3,))
    bp.fit(net, LOSS, bp.optim.sgd(0.1), params, X, Y, key=0, epochs=1, progress=False,
           checkpoint_dir=tmp_path)
    manifest = bp.checkpoint.read_manifest(next(tmp_path.glob("*.npz")))
    assert "layer_state" not in manifest["treedef"]
    assert "namedtuple[TrainState], [" in manifest["treedef"]
    assert not any("layer_state" in leaf["path"] for leaf in manifest["leaves"])


def test_bad_state_and_settings_are_named():
    bn, params, x, state, _ = _bn_at((4, 3), 3)
    with pytest.raises(ValueError, match=r"batch_norm: state must be BatchNormState\(mean: "
                                         r"\(3,\), var: \(3,\)\), got BatchNormState"):
        bn.forward(params, x, state=BatchNormState(state.mean[:2], state.var[:2]))
    with pytest.raises(ValueError, match=r"batch_norm: momentum=1.0 must be a number in "
                                         r"\[0.0, 1.0\)"):
        bp.batch_norm(momentum=1.0)
    net = bp.serial(bp.dense(3), bp.batch_norm())
    p, _ = net.init(KEY, (3,))
    with pytest.raises(ValueError, match=r"state must be a tuple with one entry per sublayer "
                                         r"\(2\), got a BatchNormState of length 2"):
        net.forward(p, x, state=state)


def test_fit_from_a_train_state_without_layer_state_starts_it():
    opt = bp.optim.sgd(0.1)
    params, _ = SMALL.init(KEY, (3,))
    given = bp.fit(SMALL, LOSS, opt, params, X, Y, epochs=1, batch_size=8, progress=False,
                   state=bp.train.init_state(params, opt, jax.random.key(1)))
    fresh = bp.fit(SMALL, LOSS, opt, params, X, Y, key=jax.random.key(1), epochs=1,
                   batch_size=8, progress=False)
    assert given.layer_state is not None
    assert_trees_close((given.params, given.layer_state), (fresh.params, fresh.layer_state),
                       0.0, "fit(state=init_state(...)) vs fit(key=...)")
