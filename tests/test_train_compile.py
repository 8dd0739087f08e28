"""make_train_epoch, and the XLA options ("auto", None, a dict) of the compiled training code."""

import jax
import numpy as np
import pytest

import jaxbp as bp
from jaxbp import optim
from jaxbp._compile import SMALL_PROGRAM_CPU_OPTIONS, SMALL_PROGRAM_FLOPS
from support import assert_trees_close

RNG = np.random.default_rng(1)
TINY = bp.serial(bp.dense(8), bp.sigmoid(), bp.dense(1), bp.sigmoid())  # XOR-sized
TINY_PARAMS, _ = TINY.init(jax.random.key(0), (2,))
XS = RNG.uniform(size=(6, 4, 2))
YS = RNG.uniform(size=(6, 4, 1))
OPT = optim.momentum(0.3, 0.9)
ON_CPU = jax.default_backend() == "cpu"


def _loop(step, params, xs, ys, keys=None):
    state = OPT.init(params)
    losses = []
    for i in range(len(xs)):
        params, state, m = step(params, state, xs[i], ys[i], None if keys is None else keys[i])
        losses.append(float(m["loss"]))
    return params, state, np.array(losses)


def test_epoch_equals_a_loop_of_steps():
    epoch = bp.make_train_epoch(TINY, bp.mse(), OPT, l2=1e-3)
    params, state, metrics = epoch(TINY_PARAMS, OPT.init(TINY_PARAMS), XS, YS)
    want = _loop(bp.make_train_step(TINY, bp.mse(), OPT, l2=1e-3), TINY_PARAMS, XS, YS)
    assert_trees_close(params, want[0], 1e-12, "epoch vs loop: params")
    assert_trees_close(state, want[1], 1e-12, "epoch vs loop: optimizer state")
    np.testing.assert_allclose(np.asarray(metrics["loss"]), want[2], rtol=1e-12)


def test_epoch_key_is_split_into_one_key_per_step():
    net = bp.serial(bp.dense(6), bp.relu(), bp.dropout(0.5), bp.dense(1))
    p, _ = net.init(jax.random.key(1), (2,))
    key = jax.random.key(7)
    got = bp.make_train_epoch(net, bp.mse(), OPT)(p, OPT.init(p), XS, YS, key)
    want = _loop(bp.make_train_step(net, bp.mse(), OPT), p, XS, YS,
                 jax.random.split(key, len(XS)))
    assert_trees_close(got[0], want[0], 1e-12, "dropout epoch vs loop")
    no_key = bp.make_train_epoch(net, bp.mse(), OPT)(p, OPT.init(p), XS, YS)
    assert not np.allclose(np.asarray(no_key[0][0].w), np.asarray(got[0][0].w))


@pytest.mark.skipif(not ON_CPU, reason="'auto' only changes CPU programs")
def test_auto_picks_the_small_program_options_only_for_a_tiny_program():
    assert bp.make_train_step(TINY, bp.mse(), OPT).compiler_options == {}  # default: XLA's
    step = bp.make_train_step(TINY, bp.mse(), OPT, compiler_options="auto")
    assert step.compiler_options is None  # decided at the first call
    step(TINY_PARAMS, OPT.init(TINY_PARAMS), XS[0], YS[0])
    assert step.compiler_options == dict(SMALL_PROGRAM_CPU_OPTIONS)

    big = bp.serial(bp.dense(128), bp.tanh(), bp.dense(4))  # 2*32*(96*128+128*4)*3 ~ 2.5 MFLOP
    p, _ = big.init(jax.random.key(0), (96,))
    assert SMALL_PROGRAM_FLOPS < 2 * 32 * (96 * 128 + 128 * 4) * 3
    step = bp.make_train_step(big, bp.mse(), OPT, compiler_options="auto")
    step(p, OPT.init(p), np.ones((32, 96)), np.ones((32, 4)))
    assert step.compiler_options == {}


def test_every_choice_of_options_gives_the_same_training():
    runs = {}
    for options in ("auto", None, {"xla_cpu_multi_thread_eigen": False} if ON_CPU else {}):
        epoch = bp.make_train_epoch(TINY, bp.mse(), OPT, compiler_options=options)
        runs[repr(options)] = epoch(TINY_PARAMS, OPT.init(TINY_PARAMS), XS, YS)[0]
        fitted = bp.fit(TINY, bp.mse(), OPT, TINY_PARAMS, XS[0], YS[0], key=0, epochs=2,
                        batch_size=2, progress=False, compiler_options=options)
        runs["fit " + repr(options)] = fitted.params
    first = runs["'auto'"]
    for name, params in runs.items():
        other = first if not name.startswith("fit") else runs["fit 'auto'"]
        assert_trees_close(params, other, 1e-12, f"compiler_options={name}")


def test_under_an_outer_jit_the_step_is_a_plain_function():
    step = bp.make_train_step(TINY, bp.mse(), OPT, compiler_options="auto")
    outer = jax.jit(lambda p, s, x, y: step(p, s, x, y)[2]["loss"])
    got = outer(TINY_PARAMS, OPT.init(TINY_PARAMS), XS[0], YS[0])
    assert step.compiler_options is None  # the outer compilation decided
    want = step(TINY_PARAMS, OPT.init(TINY_PARAMS), XS[0], YS[0])[2]["loss"]
    assert abs(float(got) - float(want)) < 1e-12


@pytest.mark.parametrize("make", ["make_train_step", "make_train_epoch", "fit"])
def test_bad_compiler_options_are_named(make):
    with pytest.raises(TypeError, match=rf"{make}: compiler_options='fast' must be 'auto', None "
                                        r"or a dict"):
        if make == "fit":
            bp.fit(TINY, bp.mse(), OPT, TINY_PARAMS, XS[0], YS[0], key=0, epochs=1,
                   compiler_options="fast")
        else:
            getattr(bp, make)(TINY, bp.mse(), OPT, compiler_options="fast")


def test_epoch_with_mismatched_steps_is_named():
    epoch = bp.make_train_epoch(TINY, bp.mse(), OPT)
    with pytest.raises(ValueError, match=r"make_train_epoch: xs and ys must share a leading "
                                         r"axis of steps .*xs: 6, ys: 5"):
        epoch(TINY_PARAMS, OPT.init(TINY_PARAMS), XS, YS[:5])


def test_the_step_offers_what_a_jitted_function_offers():
    step = bp.make_train_step(TINY, bp.mse(), OPT)
    args = (TINY_PARAMS, OPT.init(TINY_PARAMS), XS[0], YS[0])
    shapes = step.eval_shape(*args)
    assert shapes[2]["loss"].shape == ()
    assert "dot" in step.lower(*args).compile().as_text()
    with pytest.raises(AttributeError):
        _ = step.no_such_attribute


def test_fit_options_with_an_unhashable_value_are_named():
    with pytest.raises(TypeError, match=r"fit: compiler_options=.* has a value that is not "
                                        r"hashable; XLA options take numbers, strings or bools"):
        bp.fit(TINY, bp.mse(), OPT, TINY_PARAMS, XS[0], YS[0], key=0, epochs=1,
               compiler_options={"xla_cpu_multi_thread_eigen": [False]})
