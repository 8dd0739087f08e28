"""layer_norm and dropout: backward vs jax.vjp, forward properties, the mask contract, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxbp as bp
from support import layer_vjp_pair, rel_err


@settings(max_examples=4)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), batch=st.integers(1, 3),
       seed=st.integers(0, 999))
def test_layer_norm_matches_vjp_with_random_gamma_beta(shape, batch, seed):
    """Random gamma and beta (init's ones and zeros would hide the gamma factor in dx)."""
    layer = bp.layer_norm()
    params, out_shape = layer.init(None, tuple(shape))
    rng = np.random.default_rng(seed)
    params = bp.LayerNormParams(*(jnp.asarray(rng.standard_normal(p.shape)) for p in params))
    x = jnp.asarray(3.0 * rng.standard_normal((batch, *shape)) + 1.0)
    dy = jnp.asarray(rng.standard_normal((batch, *shape)))
    assert out_shape == tuple(shape)
    got, want = layer_vjp_pair(layer, params, x, dy, jit=True)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        assert rel_err(a, b) < 1e-10


def test_layer_norm_normalises_the_last_axis():
    layer = bp.layer_norm(eps=1e-12)
    params, _ = layer.init(None, (3, 6))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 6)) * 5.0 + 2.0)
    y, _ = layer.forward(params, x)
    assert np.allclose(np.mean(y, axis=-1), 0.0, atol=1e-12)
    assert np.allclose(np.var(y, axis=-1), 1.0, atol=1e-9)


def test_layer_norm_float32_path():
    layer = bp.layer_norm()
    params, _ = layer.init(None, (7,))
    params = jax.tree_util.tree_map(lambda a: (a + 0.5).astype(jnp.float32), params)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((4, 7)), jnp.float32)
    dy = jnp.asarray(rng.standard_normal((4, 7)), jnp.float32)
    got, want = layer_vjp_pair(layer, params, x, dy)
    assert got[1].dtype == jnp.float32
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        assert rel_err(a, b) < 1e-5


def test_dropout_mask_statistics_and_scaling():
    p = 0.3
    layer = bp.dropout(p)
    x = jnp.ones((200, 50))
    y, _mask = layer.forward((), x, key=jax.random.key(0))
    values = np.unique(np.asarray(y))
    assert np.allclose(values, [0.0, 1.0 / (1.0 - p)])
    dropped = float(np.mean(np.asarray(y) == 0.0))
    assert abs(dropped - p) < 0.02             # 10,000 draws: std of the fraction ~0.005
    assert abs(float(jnp.mean(y)) - 1.0) < 0.03  # inverted dropout keeps the expectation


def test_dropout_backward_reuses_the_forward_mask():
    layer = bp.dropout(0.5)
    rng = np.random.default_rng(0)
    x, dy = jnp.asarray(rng.standard_normal((3, 8))), jnp.asarray(rng.standard_normal((3, 8)))
    key = jax.random.key(7)
    y, mask = layer.forward((), x, key=key)
    _, dx = layer.backward((), mask, dy)
    assert np.array_equal(np.asarray(dx) == 0, np.asarray(y) == 0)
    got, want = layer_vjp_pair(layer, (), x, dy, key=key)
    assert rel_err(got[1], want[1]) < 1e-15
    y2, _ = layer.forward((), x, key=jax.random.key(8))
    assert not np.array_equal(y, y2)           # a different key draws a different mask


def test_dropout_is_the_identity_without_a_key():
    layer = bp.dropout(0.9)
    x = jnp.arange(6.0).reshape(2, 3)
    y, cache = layer.forward((), x)
    assert np.array_equal(y, x)
    assert np.array_equal(layer.backward((), cache, x)[1], x)


def test_dropout_in_a_network_backprop_matches_autodiff():
    net = bp.serial(bp.dense(6), bp.tanh(), bp.dropout(0.4), bp.layer_norm(), bp.dense(2))
    params, _ = net.init(jax.random.key(0), (3,))
    rng = np.random.default_rng(0)
    x, y = jnp.asarray(rng.standard_normal((5, 3))), jnp.asarray(rng.standard_normal((5, 2)))
    key = jax.random.key(1)
    v1, g1 = jax.jit(bp.backprop(net, bp.mse()))(params, x, y, key=key)
    v2, g2 = jax.jit(bp.autodiff(net, bp.mse()))(params, x, y, key=key)
    assert abs(float(v1 - v2)) < 1e-12
    for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2)):
        assert rel_err(a, b) < 1e-10


@pytest.mark.parametrize("bad", [1.0, -0.1, "0.5", True])
def test_dropout_rejects_bad_probabilities(bad):
    with pytest.raises(ValueError, match=r"drop_prob=.* must be a probability in \[0, 1\)"):
        bp.dropout(bad)


def test_layer_norm_errors():
    with pytest.raises(ValueError, match=r"eps=0 must be a positive number"):
        bp.layer_norm(eps=0)
    params, _ = bp.layer_norm().init(None, (4,))
    with pytest.raises(ValueError, match=r"shape \(2, 5\).*last axis must match gamma"):
        bp.layer_norm().forward(params, jnp.ones((2, 5)))
