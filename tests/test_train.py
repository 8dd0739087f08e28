"""The jitted step, the scanned epochs and fit(): exactness, compilation, keys, early stopping."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbp as bp
from jaxbp import optim
from jaxbp._core import Layer
from jaxbp.losses import weighted as masked
from jaxbp.train import accuracy_for, evaluate, fit, make_train_step
from support import assert_trees_close

# --------------------------------------------------------------------------------------
# Shared objects: fit() caches its compiled epoch per (net, loss, optimizer, ...), so tests
# that reuse these objects share one compilation.

COMPILES = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kw: COMPILES.append(event)
    if event == "/jax/core/compile/backend_compile_duration" else None)

RNG = np.random.default_rng(0)
X = RNG.standard_normal((50, 4))
Y = (np.argmax(X[:, :3] + 0.3 * RNG.standard_normal((50, 3)), axis=1)).astype(np.int32)
NET = bp.serial(bp.dense(8), bp.tanh(), bp.dense(3))
LOSS = bp.softmax_cross_entropy()
OPT = optim.momentum(0.1, 0.9)
PARAMS, _ = NET.init(jax.random.key(0), (4,))

TRACED_KEYS = []


def noise_layer(scale=0.5):
    """A test-only stochastic layer, ``y = x * (1 + scale * eps)``, ``eps ~ N(0, 1)`` from ``key``.

    It records, at trace time, whether it was given a key (training) or not (evaluation).
    """

    def init(key, input_shape):
        return (), tuple(input_shape)

    def forward(params, x, *, key=None):
        TRACED_KEYS.append(key is not None)
        if key is None:
            return x, jnp.ones_like(x)
        m = 1.0 + scale * jax.random.normal(key, x.shape, x.dtype)
        return x * m, m

    def backward(params, m, dy):
        return (), dy * m

    return Layer(init, forward, backward, "noise")


NOISY = bp.serial(bp.dense(8), bp.tanh(), noise_layer(), bp.dense(3))


def _fit(net=NET, **kw):
    kw = {"key": 0, "epochs": 2, "batch_size": 16, "progress": False, **kw}
    return fit(net, LOSS, kw.pop("optimizer", OPT), kw.pop("params", PARAMS), X, Y, **kw)


# --------------------------------------------------------------------------------------
# make_train_step


def test_backprop_and_autodiff_train_alike_for_100_steps():
    opt = optim.adam(0.01)
    runs = {}
    for grad in (bp.backprop, bp.autodiff):
        step = make_train_step(NET, LOSS, opt, grad, l1=1e-4, l2=1e-3)
        params, state = PARAMS, opt.init(PARAMS)
        for _ in range(100):
            params, state, _metrics = step(params, state, X, Y, None)
        runs[grad.__name__] = params
    assert_trees_close(runs["backprop"], runs["autodiff"], 1e-8, "backprop vs autodiff")
    moved = float(jnp.max(jnp.abs(runs["backprop"][0].w - PARAMS[0].w)))
    assert moved > 0.1, moved


def test_step_is_one_gradient_update_with_penalties():
    step = make_train_step(NET, LOSS, optim.sgd(0.5), "backprop", l2=0.1)
    params, state, metrics = step(PARAMS, optim.sgd(0.5).init(PARAMS), X, Y)
    value, grads = jax.jit(bp.autodiff(NET, LOSS, l2=0.1))(PARAMS, X, Y)
    want = jax.tree_util.tree_map(lambda p, g: p - 0.5 * g, PARAMS, grads)
    assert_trees_close(params, want, 1e-12, "one sgd step")
    assert abs(float(metrics["loss"]) - float(value)) < 1e-12
    assert int(state.count) == 1


def test_step_accepts_optax_optimizers_and_compiles_once():
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(0.01))
    step = make_train_step(NET, LOSS, opt, bp.backprop, donate=True)
    params, state = jax.tree_util.tree_map(jnp.copy, PARAMS), opt.init(PARAMS)
    params, state, first = step(params, state, X, Y, jax.random.key(1))
    before = len(COMPILES)
    for _i in range(20):
        params, state, metrics = step(params, state, X, Y, jax.random.key(2))
    assert len(COMPILES) == before, "a later step call compiled something new"
    assert float(metrics["loss"]) < float(first["loss"]) - 0.1


# --------------------------------------------------------------------------------------
# Padding and masking


def test_masked_loss_of_a_padded_batch_equals_the_unpadded_loss():
    real, pad = 5, 3
    x_pad = np.concatenate([X[:real], X[:pad]])  # padding rows copy real ones
    y_pad = np.concatenate([Y[:real], Y[:pad]])
    w = np.concatenate([np.full(real, 1.0 / real), np.zeros(pad)])
    for grad in (bp.backprop, bp.autodiff):
        want = jax.jit(grad(NET, LOSS, l2=0.01))(PARAMS, X[:real], Y[:real])
        got = jax.jit(grad(NET, masked(LOSS), l2=0.01))(PARAMS, x_pad, (y_pad, w))
        assert_trees_close(got, want, 1e-12, f"masked {grad.__name__}")
    dy = jax.jit(lambda x, y, w: masked(LOSS).grad(NET.forward(PARAMS, x)[0], (y, w)))(
        x_pad, y_pad, w)
    assert np.all(np.asarray(dy[real:]) == 0.0), "padded rows must have exactly zero gradient"
    assert np.all(np.asarray(dy[:real]) != 0.0)


def test_an_epoch_with_a_ragged_batch_equals_unpadded_steps():
    # 50 examples in batches of 16: 16, 16, 16 and a ragged 2 (padded to 16 and masked).
    result = _fit(epochs=1, shuffle=False)
    step = make_train_step(NET, LOSS, OPT)
    params, state = PARAMS, OPT.init(PARAMS)
    for start in range(0, 50, 16):
        params, state, _ = step(params, state, X[start:start + 16], Y[start:start + 16])
    assert_trees_close(result.params, params, 1e-12, "fit epoch vs unpadded steps")
    assert int(result.state.step) == 4 and int(result.state.epoch) == 1


# --------------------------------------------------------------------------------------
# fit


def test_no_epoch_after_the_first_compiles_anything():
    counts = []
    opt = optim.adam(0.01)  # a fresh optimizer: the first epoch must compile
    before = len(COMPILES)
    _fit(optimizer=opt, epochs=5, validation=(X[:20], Y[:20]), patience=10,
         callback=lambda state, record: counts.append(len(COMPILES)))
    assert counts[0] > before, "the first epoch should have compiled the epoch function"
    assert counts[1:] == [counts[0]] * 4, f"compilations after each epoch: {counts}"


def test_same_seed_gives_bit_identical_parameters_and_keys_reach_stochastic_layers():
    params, _ = NOISY.init(jax.random.key(0), (4,))
    TRACED_KEYS.clear()
    a = _fit(NOISY, params=params, key=7, validation=(X[:10], Y[:10]))
    assert True in TRACED_KEYS, "training never passed a key to the stochastic layer"
    assert False in TRACED_KEYS, "evaluation should run the stochastic layer with key=None"
    b = _fit(NOISY, params=params, key=7, validation=(X[:10], Y[:10]))
    c = _fit(NOISY, params=params, key=8, validation=(X[:10], Y[:10]))
    for pa, pb in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)):
        assert np.array_equal(np.asarray(pa), np.asarray(pb))
    assert a.history == {k: v for k, v in b.history.items() if k != "seconds"} | {
        "seconds": a.history["seconds"]}
    assert not np.array_equal(np.asarray(a.params[0].w), np.asarray(c.params[0].w))


def test_early_stopping_restores_the_best_parameters():
    # Validation labels are the training labels shifted by one class: the better the fit, the
    # worse the validation loss, so training must stop early and hand back an early epoch.
    y_wrong = (Y + 1) % 3
    r = _fit(epochs=40, patience=3, validation=(X, y_wrong))
    val = r.history["val_loss"]
    best = int(np.argmin(val)) + 1
    assert r.best_epoch == best
    assert len(val) == best + 3 < 40, f"did not stop {patience_msg(val)}"
    assert int(r.state.epoch) == len(val)
    assert evaluate(NET, LOSS, r.params, X, y_wrong)["loss"] == pytest.approx(val[best - 1],
                                                                              rel=1e-12)
    assert not np.array_equal(np.asarray(r.params[0].w), np.asarray(r.state.params[0].w))


def patience_msg(val):
    return "val_loss per epoch: " + ", ".join(f"{v:.3f}" for v in val)


def test_resuming_from_state_counts_epochs_as_totals():
    whole = _fit(epochs=4, validation=(X[:10], Y[:10]))
    part = _fit(epochs=2, validation=(X[:10], Y[:10]))
    rest = _fit(epochs=4, validation=(X[:10], Y[:10]), state=part.state, history=part.history,
                key=None)  # the state's key continues
    assert rest.history["epoch"] == [1, 2, 3, 4]
    assert whole.history["train_loss"] == rest.history["train_loss"]
    for a, b in zip(jax.tree_util.tree_leaves(whole.params),
                    jax.tree_util.tree_leaves(rest.params)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    # The caller's arrays survive: fit donates only its own copies.
    assert np.isfinite(np.asarray(part.params[0].w)).all()


def test_divergence_rebuilds_the_donated_start_of_its_epoch_bit_for_bit(tmp_path):
    # fit donates each epoch's start state; an epoch that diverges gets it back from the
    # checkpoint before it, or by running the epochs before it again from the state fit
    # started from. Both give the same exception, to the bit.
    from jaxbp.train.diverge import TrainingDiverged

    net = bp.serial(bp.dense(8), bp.relu(), bp.dense(1))
    x = np.random.default_rng(0).standard_normal((40, 3))
    params = net.init(jax.random.key(0), (3,))[0]
    opt = optim.momentum(lambda count: jnp.where(count < 12, 0.01, 1e3), 0.9)
    mse = bp.mse()  # one object: the fits share their compiled epoch

    def diverging(**kw):
        with pytest.raises(TrainingDiverged, match=r"in epoch 4 at step \d of 5") as info:
            fit(net, mse, opt, params, x, 3 * x[:, :1], epochs=6, batch_size=8,
                progress=False, **kw)
        return info.value

    fresh = diverging(key=0)
    first = fit(net, mse, opt, params, x, 3 * x[:, :1], key=0, epochs=1, batch_size=8,
                progress=False)
    given = diverging(state=first.state, history=first.history)
    saved = diverging(key=0, checkpoint_dir=tmp_path)
    assert fresh.step == given.step == saved.step and fresh.leaf == given.leaf == saved.leaf
    assert int(fresh.result.state.step) == 15 + fresh.step - 1
    def bits(state):
        return jax.tree_util.tree_leaves(state._replace(key=jax.random.key_data(state.key)))

    for e in (given, saved):
        for a, b in zip(bits(fresh.result.state), bits(e.result.state)):
            assert np.array_equal(np.asarray(a), np.asarray(b))
    leaves = jax.tree_util.tree_leaves((fresh.result.params, fresh.result.opt_state))
    assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in leaves)
    assert np.isfinite(np.asarray(first.params[0].w)).all()  # the caller's state survives


def test_history_and_progress_bar():
    out = io.StringIO()
    r = _fit(epochs=3, progress=True, stream=out, validation=(X[:10], Y[:10]))
    assert set(r.history) == {"epoch", "train_loss", "train_accuracy", "val_loss",
                              "val_accuracy", "objective", "seconds"}
    assert all(len(v) == 3 for v in r.history.values())
    assert "epoch 3/3" in out.getvalue() and "val_accuracy" in out.getvalue()
    quiet = io.StringIO()
    _fit(epochs=1, progress=None, stream=quiet)  # not a terminal: no bar
    assert quiet.getvalue() == ""


def test_accuracy_rules():
    acc = accuracy_for(bp.softmax_cross_entropy())
    logits = jnp.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    np.testing.assert_array_equal(acc(logits, jnp.array([0, 1, 1])), [1, 1, 0])
    np.testing.assert_array_equal(acc(logits, jnp.eye(2)[jnp.array([1, 1, 0])]), [0, 1, 1])
    z = jnp.array([[-0.2], [0.3]])
    np.testing.assert_array_equal(
        accuracy_for(bp.sigmoid_binary_cross_entropy())(z, jnp.array([[0.0], [1.0]])), [1, 1])
    np.testing.assert_array_equal(accuracy_for(bp.mse())(z, jnp.array([[0.0], [1.0]])), [1, 0])


@pytest.mark.parametrize("kw, match", [
    ({"batch_size": 0}, r"batch_size=0 must be an int >= 1"),
    ({"epochs": -1}, r"epochs=-1 must be an int >= 0"),
    ({"patience": 0}, r"patience=0 must be an int >= 1"),
    ({"grad": "magic"}, r"grad='magic' is not a gradient source"),
    ({"optimizer": optax.adam}, r"not an optax GradientTransformation.*optax.adam\(1e-3\)"),
    ({"validation": X}, r"validation must be a pair \(x_val, y_val\)"),
    ({"validation": (X, Y[:3])}, r"fit validation: x has shape \(50, 4\) and y has shape \(3,\)"),
    ({"regularize": [True]}, r"regularize=\[True\] is not hashable"),
    ({"accuracy": "top5"}, r"accuracy='top5': expected 'auto', None or a callable"),
    ({"l2": -1.0}, r"l2=-1.0 must be a non-negative number"),
    ({"grad": 3}, r"grad=3 must be bp.backprop, bp.autodiff or their name"),
    ({"accuracy": 3}, r"accuracy=3 must be 'auto', None or a callable"),
    ({"net": "mlp"}, r"fit: net must be a jaxbp Layer"),
    ({"key": None}, r"fit: key is required to start training"),
])
def test_bad_arguments_are_named(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        _fit(**kw)


def test_wrong_loss_and_non_array_data_are_named():
    with pytest.raises(TypeError, match=r"fit: loss must be a jaxbp Loss .*bp.mse\(\)"):
        fit(NET, bp.mse, OPT, PARAMS, X, Y, key=0, epochs=1)
    with pytest.raises(TypeError, match=r"fit: x and y must be arrays .*got list and ndarray"):
        fit(NET, LOSS, OPT, PARAMS, X.tolist(), Y, key=0, epochs=1)


def test_mismatched_data_is_named():
    with pytest.raises(ValueError, match=r"fit: x has shape \(50, 4\) and y has shape \(49,\)"):
        fit(NET, LOSS, OPT, PARAMS, X, Y[:49], key=0, epochs=1)


@pytest.mark.parametrize("name", ["jaxbp.optim", "jaxbp.train", "jaxbp.data"])
def test_docstring_examples(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
