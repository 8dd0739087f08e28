"""Whole networks: backprop and autodiff agree for every loss, with and without L1/L2."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxbp as bp
from support import assert_trees_close

D_IN, BATCH = 5, 4


def mixed_net(d_out, head=()):
    """A network that passes through every activation (softplus keeps ReLU inputs off 0)."""
    return bp.serial(
        bp.dense(6), bp.tanh(), bp.dense(6), bp.sigmoid(), bp.dense(6, w_init="he_normal"),
        bp.elu(), bp.dense(6), bp.gelu(), bp.dense(6), bp.gelu(approximate=False),
        bp.dense(6), bp.leaky_relu(0.2), bp.dense(6), bp.softplus(), bp.relu(),
        bp.dense(6), bp.identity(), bp.dense(d_out), *head)


# name -> (network head, d_out, loss, target maker)
SETUPS = {
    "mse": ((), 3, bp.mse, lambda r: r.standard_normal((BATCH, 3))),
    "bce": ((bp.sigmoid(),), 2, bp.binary_cross_entropy,
            lambda r: r.integers(0, 2, (BATCH, 2)).astype(float)),
    "sigmoid_bce": ((), 2, bp.sigmoid_binary_cross_entropy,
                    lambda r: r.integers(0, 2, (BATCH, 2)).astype(float)),
    "softmax_ce_labels": ((), 4, bp.softmax_cross_entropy, lambda r: r.integers(0, 4, BATCH)),
    "softmax_ce_one_hot": ((), 4, bp.softmax_cross_entropy,
                           lambda r: np.eye(4)[r.integers(0, 4, BATCH)]),
    "softmax_layer_mse": ((bp.softmax(),), 3, bp.mse, lambda r: np.eye(3)[r.integers(0, 3, BATCH)]),
}
REGS = {"none": (0.0, 0.0), "l1": (1e-2, 0.0), "l2": (0.0, 1e-2), "l1_l2": (3e-3, 5e-2)}


def _problem(setup, seed, dtype):
    head, d_out, make_loss, make_y = SETUPS[setup]
    net = mixed_net(d_out, head)
    params, _ = net.init(jax.random.key(seed), (D_IN,))
    params = jax.tree_util.tree_map(lambda a: a.astype(dtype), params)
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((BATCH, D_IN)), dtype)
    y = jnp.asarray(make_y(rng))
    if y.dtype.kind == "f":
        y = y.astype(dtype)
    return net, make_loss(), params, x, y


def _compare(setup, reg, seed, dtype, rtol, jit=False):
    net, loss, params, x, y = _problem(setup, seed, dtype)
    l1, l2 = REGS[reg]
    manual, auto = bp.backprop(net, loss, l1=l1, l2=l2), bp.autodiff(net, loss, l1=l1, l2=l2)
    if jit:
        manual, auto = jax.jit(manual), jax.jit(auto)
    (v_m, g_m), (v_a, g_a) = manual(params, x, y), auto(params, x, y)
    assert_trees_close(v_m, v_a, rtol, f"{setup}/{reg} loss value")
    assert_trees_close(g_m, g_a, rtol, f"{setup}/{reg} gradients")
    for leaf in jax.tree_util.tree_leaves(g_m):
        assert leaf.dtype == dtype


def _compare_all(pairs, **kw):
    """``_compare`` for each ``(setup, reg)``, in one test: the eager ops of ``mixed_net``
    compile once per dtype and process, and with one test per pair both pytest-xdist workers
    compiled them all (~10 s each). Every failing pair is reported."""
    failures = []
    for setup, reg in pairs:
        try:
            _compare(setup, reg, **kw)
        except AssertionError as e:
            failures.append(f"{setup}/{reg}: {e}")
    assert not failures, f"{len(failures)} of {len(pairs)} failed:\n" + "\n".join(failures)


def test_backprop_equals_autodiff_float64():
    """Every setup with every regularisation."""
    _compare_all([(s, r) for s in sorted(SETUPS) for r in sorted(REGS)], seed=0,
                 dtype=jnp.float64, rtol=1e-10)


def test_backprop_equals_autodiff_float32():
    _compare_all([(s, "l1_l2") for s in sorted(SETUPS)], seed=1, dtype=jnp.float32, rtol=1e-5)


@pytest.mark.parametrize("setup", ["mse", "softmax_ce_labels"])
def test_backprop_equals_autodiff_under_jit(setup):
    _compare(setup, "l1_l2", seed=2, dtype=jnp.float64, rtol=1e-10, jit=True)


@settings(max_examples=6)
@given(seed=st.integers(0, 2**16), setup=st.sampled_from(sorted(SETUPS)),
       reg=st.sampled_from(sorted(REGS)))
def test_backprop_equals_autodiff_random_draws(seed, setup, reg):
    _compare(setup, reg, seed=seed, dtype=jnp.float64, rtol=1e-10)


def test_regularisation_skips_biases_and_matches_formula():
    net, loss, params, x, y = _problem("mse", 0, jnp.float64)
    _, g0 = bp.backprop(net, loss)(params, x, y)
    _, g = bp.backprop(net, loss, l1=0.1, l2=0.5)(params, x, y)
    w, _b = params[0].w, params[0].b
    np.testing.assert_allclose(g[0].w - g0[0].w, 0.1 * jnp.sign(w) + 0.5 * w, rtol=1e-12)
    np.testing.assert_array_equal(g[0].b, g0[0].b)
    v0, _ = bp.backprop(net, loss)(params, x, y)
    v, _ = bp.backprop(net, loss, l1=0.1, l2=0.5)(params, x, y)
    ws = [p.w for p in params if isinstance(p, bp.DenseParams)]
    want = sum(0.1 * jnp.sum(jnp.abs(w)) + 0.25 * jnp.sum(w * w) for w in ws)
    np.testing.assert_allclose(v - v0, want, rtol=1e-12)


def test_regularize_mask_can_include_biases():
    net, loss, params, x, y = _problem("mse", 0, jnp.float64)
    everything = lambda leaf: True  # noqa: E731
    _, g_m = bp.backprop(net, loss, l2=0.3, regularize=everything)(params, x, y)
    _, g_a = bp.autodiff(net, loss, l2=0.3, regularize=everything)(params, x, y)
    assert_trees_close(g_m, g_a, 1e-10, "biases regularised")
    _, _g0 = bp.backprop(net, loss)(params, x, y)
    b = params[0].b.at[0].set(1.0)
    params = (params[0]._replace(b=b), *params[1:])
    _, g1 = bp.backprop(net, loss, l2=0.3, regularize=everything)(params, x, y)
    _, g1_0 = bp.backprop(net, loss)(params, x, y)
    assert float(g1[0].b[0] - g1_0[0].b[0]) == pytest.approx(0.3)


def test_stochastic_key_is_accepted_and_deterministic_without_dropout():
    net, loss, params, x, y = _problem("mse", 0, jnp.float64)
    a = bp.backprop(net, loss)(params, x, y, key=jax.random.key(1))
    b = bp.backprop(net, loss)(params, x, y)
    assert_trees_close(a, b, 0.0, "key without stochastic layers")
