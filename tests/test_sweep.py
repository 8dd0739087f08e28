"""bp.sweep and bp.find_learning_rate: every run of a sweep is the fit it stands for, diverged
runs are marked without disturbing the others, the program compiles once whatever K is; the
range test's rule; the ``jaxbp sweep`` command. (The docs section that answers "how do I choose
a learning rate" runs, with its own asserts, in tests/test_docs.py.)

Compiles are the cost here: one sweep and its reference fits are shared by the tests through
module-scoped fixtures, on tiny shapes. (The 4-device sweep runs in tests/test_parallel.py's
4-device worker.)
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbp as bp
from jaxbp.cli import main
from jaxbp.train.lr_range import suggest
from support import assert_trees_close, compile_events

COMPILES = compile_events()

RNG = np.random.default_rng(3)
X = RNG.standard_normal((40, 3))
Y = X[:, :1] * X[:, 1:2] + 0.1 * X[:, 2:]  # regression, (40, 1)
VAL = (X[:10] + 0.1, Y[:10])
# relu and no saturation: a learning rate of 1e3 overflows to inf within a few steps
NET = bp.serial(bp.dense(8), bp.relu(), bp.dropout(0.2), bp.dense(1))
LOSS, CE = bp.mse(), bp.softmax_cross_entropy()  # one object each: fit caches on them
RATES, SEEDS, L2 = (0.02, 0.1, 1e3), (0, 1), (0.0, 1e-2)
KW = dict(epochs=3, batch_size=16, l1=1e-3)  # 40 rows: batches of 16, 16 and a ragged 8


@pytest.fixture(scope="module")
def swept():
    return bp.sweep(NET, LOSS, bp.optim.momentum, X, Y, learning_rates=RATES, seeds=SEEDS,
                    l2=L2, validation=VAL, **KW)


def _alone(net, loss, optimizer, seed, x, y, *, dtype=None, learning_rate=None, **kw):
    """``fit`` of one setting from ``net.init(key(seed))[0]`` with ``key=key(seed)``.

    With ``learning_rate``, ``optimizer`` is an ``optax.inject_hyperparams`` optimizer whose
    state is given that rate: the same update as the optimizer made with it, from one object,
    so that every such reference fit shares one compiled epoch (each compile costs ~1 s)."""
    params = net.init(jax.random.key(seed), x.shape[1:])[0]
    if dtype is not None:
        params = jax.tree_util.tree_map(lambda a: a.astype(dtype), params)
    if learning_rate is None:
        return bp.fit(net, loss, optimizer, params, x, y, key=jax.random.key(seed),
                      progress=False, **kw)
    opt_state = optimizer.init(params)
    rate = jnp.asarray(learning_rate, opt_state.hyperparams["learning_rate"].dtype)
    opt_state = opt_state._replace(hyperparams={**opt_state.hyperparams, "learning_rate": rate})
    zero = jnp.zeros([], jnp.int32)
    state = bp.TrainState(params, opt_state, zero, zero, jax.random.key(seed))
    return bp.fit(net, loss, optimizer, None, x, y, state=state, progress=False, **kw)


MOMENTUM = optax.inject_hyperparams(bp.optim.momentum, static_args=("beta",))(learning_rate=0.1)


def test_the_runs_are_the_product_grid_in_order(swept):
    want = [{"learning_rate": lr, "seed": s, "l1": 1e-3, "l2": l2}
            for lr in RATES for s in SEEDS for l2 in L2]
    assert swept.settings == want
    assert jax.tree_util.tree_leaves(swept.params)[0].shape[0] == len(want)


# run 1 (traced l2) against fit(optimizer(lr), l2=) literally; lr and seed vary over the others
@pytest.mark.parametrize("k", [0, 1, 2, 6])
def test_every_run_equals_fit_alone_float64(swept, k):
    s = swept.settings[k]
    if k == 1:
        alone = _alone(NET, LOSS, bp.optim.momentum(s["learning_rate"]), s["seed"], X, Y,
                       l2=s["l2"], validation=VAL, **KW)
    else:
        alone = _alone(NET, LOSS, MOMENTUM, s["seed"], X, Y, l2=s["l2"], validation=VAL,
                       learning_rate=s["learning_rate"], **KW)
    assert_trees_close(swept.params_of(k), alone.params, 1e-10, f"run {k} {s}: params")
    for name in ("train_loss", "val_loss", "objective", "train_accuracy"):
        np.testing.assert_allclose(swept.histories[k][name], alone.history[name], rtol=1e-10,
                                   err_msg=f"run {k} {s}: {name}")
    assert swept.histories[k]["epoch"] == [1, 2, 3]


def test_a_diverging_rate_is_marked_and_the_other_runs_are_finite(swept):
    assert swept.diverged == [s["learning_rate"] == 1e3 for s in swept.settings]
    for k, bad in enumerate(swept.diverged):
        leaves = jax.tree_util.tree_leaves(swept.params_of(k))
        assert all(bool(jnp.all(jnp.isfinite(a))) for a in leaves), f"run {k}: non-finite"
        n = len(swept.histories[k].get("epoch", []))
        assert (n < 3) if bad else (n == 3)
        assert all(np.isfinite(swept.histories[k].get("train_loss", [])))


def test_best_is_the_lowest_final_validation_loss_of_the_finite_runs(swept):
    finals = [h["val_loss"][-1] if not d else np.inf
              for h, d in zip(swept.histories, swept.diverged)]
    assert swept.best == int(np.argmin(finals))


SMALL = bp.serial(bp.dense(6), bp.tanh(), bp.dense(3))
LABELS = np.argmax(X, axis=1).astype(np.int32)


@pytest.fixture(scope="module")
def float32_sweep():
    """An optax factory's sweep in float32, the compiles it took and the fits it stands for
    (run first: they compile the eager casts a first float32 sweep would, so that only the
    sweep's own programs count)."""
    adam = optax.inject_hyperparams(optax.adam)(learning_rate=0.1)
    alone = [_alone(SMALL, CE, adam, 0, X, LABELS, dtype=jnp.float32, learning_rate=lr,
                    epochs=3, batch_size=16) for lr in (0.01, 0.1)]
    before = len(COMPILES)
    result = bp.sweep(SMALL, CE, optax.adam, X, LABELS, learning_rates=[0.01, 0.1], epochs=3,
                      batch_size=16, dtype=jnp.float32)
    return result, len(COMPILES) - before, alone


def test_float32_runs_of_an_optax_factory_equal_fit_alone(float32_sweep):
    result, _, alone = float32_sweep
    assert jax.tree_util.tree_leaves(result.params)[0].dtype == jnp.float32
    for k, _s in enumerate(result.settings):
        assert_trees_close(result.params_of(k), alone[k].params, 1e-3, f"float32 run {k}")
        moved = result.params_of(k)[0].w - SMALL.init(jax.random.key(0), (3,))[0][0].w
        assert float(jnp.max(jnp.abs(moved))) > 1e-3, "training must move the parameters"


def test_the_compile_count_does_not_grow_with_the_number_of_runs(float32_sweep):
    _, first, _ = float32_sweep  # K = 2
    assert first > 0, "a new sweep must compile its programs"
    before = len(COMPILES)
    bp.sweep(SMALL, CE, optax.adam, X, LABELS,
             learning_rates=[0.01, 0.02, 0.05, 0.1, 0.2, 0.5], epochs=3, batch_size=16,
             dtype=jnp.float32)
    assert len(COMPILES) - before == first, f"compiles for K=2: {first}, K=6: " \
                                            f"{len(COMPILES) - before}"
    before = len(COMPILES)
    bp.sweep(SMALL, CE, optax.adam, X, LABELS,
             learning_rates=[1.0, 2.0], epochs=3, batch_size=16, dtype=jnp.float32)
    assert len(COMPILES) == before, "other rates, same K: the compiled program is reused"


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(learning_rates=[]), TypeError, r"sweep: learning_rates=\[\] must be a non-empty "
                                         r"sequence\. Fix: e\.g\. learning_rates="),
    (dict(learning_rates=[0.1, -1.0]), ValueError, r"sweep: learning_rates=-1\.0 must be a "
                                                   r"positive number"),
    (dict(learning_rates=[0.1], seeds=3), TypeError, r"sweep: seeds=3 must be a sequence of "
                                                     r"seeds\. Fix: e\.g\. seeds=range\(3\)"),
    (dict(learning_rates=[0.1], l2=[-1.0]), ValueError, r"sweep: l2=-1\.0 must be a "
                                                        r"non-negative number"),
    (dict(learning_rates=[0.1], epochs=0), ValueError, r"sweep: epochs=0 must be an int >= 1"),
    (dict(optimizer=bp.optim.sgd(0.1), learning_rates=[0.1]), TypeError,
     r"sweep: optimizer=.* must be a factory learning_rate -> GradientTransformation .*Fix: "
     r"e\.g\. optimizer=bp\.optim\.adam"),
    (dict(learning_rates=None), TypeError, r"sweep: optimizer=.* is a factory, but "
                                           r"learning_rates=None gives it no learning rate"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    args = dict(optimizer=bp.optim.sgd, epochs=1) | kwargs
    with pytest.raises(error, match=match):
        bp.sweep(NET, LOSS, args.pop("optimizer"), X, Y, **args)


# --------------------------------------------------------------------------------------
# the range test


def test_the_suggestion_rule_on_a_known_curve():
    lrs = np.geomspace(1e-4, 1e2, 61)
    t = np.log10(lrs)  # flat until 1e-3, falls fastest at 1e-2, lowest at 1, then explodes
    curve = np.where(t < 0, 1.0 - 0.5 * (1 + np.tanh(2.5 * (t + 2))) * 0.8, 0.2 + 5 * t ** 2)
    curve[-3:] = np.nan
    test = suggest(lrs, curve, smoothing=0.0)
    assert test.suggested == pytest.approx(1e-2, rel=0.3)
    low, high = test.range
    assert 1e-3 < low < test.suggested < high <= 1.0 * 1.3
    assert test.diverged_at is not None and 1.0 < test.diverged_at < 10.0
    assert np.isnan(test.smoothed[-1]) and np.isfinite(test.smoothed[0])
    flat = suggest(lrs, np.ones(61), smoothing=0.0)
    assert flat.suggested is None and flat.range is None and flat.diverged_at is None


# --------------------------------------------------------------------------------------
# the command and the docs


def test_the_sweep_command_prints_a_table_and_the_best(capsys):
    argv = ["sweep", "xor", "--lr", "0.5,5,1e6", "--seeds", "2", "--epochs", "30",
            "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.match(r"\s+[\d.e+]+\s+\d\s", line)]
    assert len(rows) == 6, out
    best = re.search(r"best: learning_rate (\S+), seed (\d): train_loss (\S+)", out)
    assert best and float(best.group(1)) == 5.0, out
    losses = {float(r.split()[0]): float(r.split()[2]) for r in rows if r.split()[1] == best[2]}
    assert losses[5.0] == min(losses.values()), out
    assert abs(losses[5.0] - float(best.group(3))) < 1e-4, out


def test_the_plots_are_written_diverged_runs_included(swept, tmp_path):
    from jaxbp import plot

    assert any(swept.diverged)
    assert plot.save_sweep_plot(tmp_path / "sweep.png", swept) == str(tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 1000
    lrs = np.geomspace(1e-3, 10, 20)
    test = suggest(lrs, np.r_[np.linspace(1, 0.1, 15), [0.5, 2, 9, np.inf, np.nan]])
    plot.save_lr_test_plot(tmp_path / "lr.png", test, title="range test")
    assert (tmp_path / "lr.png").stat().st_size > 1000


@pytest.mark.parametrize("argv, match", [
    (["--lr", "1e-4:1"], r"--lr='1e-4:1' must be LO:HI:N .*Fix: e\.g\. --lr 1e-4:1:16"),
    (["--lr", "1:1e-4:3"], r"--lr='1:1e-4:3' must be LO:HI:N"),
    (["--lr", "0.1,x"], r"--lr='0.1,x' must be"),
    (["--seeds", "0"], r"--seeds=0 must be an int >= 1\. Fix: e\.g\. --seeds 3"),
    (["--epochs", "two"], r"--epochs='two' must be an int >= 1"),
    (["--plot", "out.jpg"], r"must end in \.png"),
])
def test_bad_sweep_flags_are_one_line_usage_errors(capsys, argv, match):
    assert main(["sweep", "xor", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("jaxbp sweep: error: "), err
    assert re.search(match, err), err


