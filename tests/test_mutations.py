"""The gradient checks can fail: seeded wrong derivations are caught by the same machinery.

Each mutant replaces one hand-derived backward by a classic slip; the checks used for the real
layers (tests/support.py) must reject it, while the unmutated layer passes the same check.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp as bp
from support import assert_layer_matches_vjp, assert_trees_close


def with_backward(layer, backward):
    return layer._replace(backward=backward, name=layer.name + "[mutant]")


def dense_wrong(kind, d_out):
    layer = bp.dense(d_out)

    def backward(params, x, dy):
        dw, db, dx = x.T @ dy, jnp.sum(dy, axis=0), dy @ params.w.T
        if kind == "transposed_dw":      # (dy^T x) laid out as (d_out, d_in), forced to w's shape
            dw = (dy.T @ x).reshape(params.w.shape)
        elif kind == "unsummed_db":      # the bias gradient of the first example only
            db = dy[0]
        elif kind == "mean_db":          # mean instead of sum over the batch
            db = jnp.mean(dy, axis=0)
        elif kind == "dx_without_transpose":
            dx = (dy @ params.w.reshape(params.w.shape[::-1]))
        return bp.DenseParams(dw, db), dx
    return with_backward(layer, backward)


def activation_without_derivative(make):
    layer = make()
    return with_backward(layer, lambda params, cache, dy: ((), dy))


@pytest.mark.parametrize("kind", ["transposed_dw", "unsummed_db", "mean_db",
                                  "dx_without_transpose"])
def test_wrong_dense_backward_is_caught(kind):
    # Square d_in = d_out = 4: a transposed gradient has the right shape and only values differ.
    assert_layer_matches_vjp(bp.dense(4), (4,), batch=3, seed=0)  # the real one passes
    with pytest.raises(AssertionError, match=r"relative error"):
        assert_layer_matches_vjp(dense_wrong(kind, 4), (4,), batch=3, seed=0)


def test_transposed_dw_with_rectangular_weights_is_caught_as_shape_mismatch():
    layer = bp.dense(3)

    def backward(params, x, dy):
        return bp.DenseParams(dy.T @ x, jnp.sum(dy, axis=0)), dy @ params.w.T
    with pytest.raises(AssertionError, match=r"\.w: shape \(3, 5\) != \(5, 3\)"):
        assert_layer_matches_vjp(with_backward(layer, backward), (5,), batch=2, seed=0)


@pytest.mark.parametrize("make", [bp.sigmoid, bp.tanh, bp.relu, bp.elu, bp.softplus, bp.gelu,
                                  bp.softmax], ids=lambda f: f.__name__)
def test_activation_missing_derivative_factor_is_caught(make):
    with pytest.raises(AssertionError, match=r"\[1\]: relative error"):
        assert_layer_matches_vjp(activation_without_derivative(make), (4,), batch=3, seed=0,
                                 away_from_zero=0.05)


def test_wrong_layer_inside_a_network_is_caught_by_backprop_vs_autodiff():
    net = bp.serial(bp.dense(4), activation_without_derivative(bp.tanh), bp.dense(2))
    params, _ = net.init(jax.random.key(0), (3,))
    rng = np.random.default_rng(0)
    x, y = jnp.asarray(rng.standard_normal((5, 3))), jnp.asarray(rng.standard_normal((5, 2)))
    _, g_m = bp.backprop(net, bp.mse())(params, x, y)
    _, g_a = bp.autodiff(net, bp.mse())(params, x, y)
    with pytest.raises(AssertionError, match=r"\[0\]\.w: relative error"):
        assert_trees_close(g_m, g_a, 1e-10, "network")
    assert_trees_close(g_m[2], g_a[2], 1e-10, "layers after the slip are still right")


LOSS_SLIPS = {
    "mse_missing_factor_2": (bp.mse, lambda p, t: (p - t) / p.size),
    "mse_sum_not_mean": (bp.mse, lambda p, t: 2.0 * (p - t)),
    "softmax_ce_sign": (bp.softmax_cross_entropy,
                        lambda z, y: (jax.nn.one_hot(y, z.shape[1]) - jax.nn.softmax(z))
                        / z.shape[0]),
    "sigmoid_bce_without_sigmoid": (bp.sigmoid_binary_cross_entropy,
                                    lambda z, y: (z - y) / z.size),
}


@pytest.mark.parametrize("slip", sorted(LOSS_SLIPS))
def test_wrong_loss_gradient_is_caught(slip):
    make, wrong_grad = LOSS_SLIPS[slip]
    loss = make()
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.standard_normal((4, 3)))
    y = (jnp.asarray(rng.integers(0, 3, 4)) if make is bp.softmax_cross_entropy
         else jnp.asarray(rng.integers(0, 2, (4, 3)), jnp.float64))
    want = jax.grad(loss.value)(z, y)
    assert_trees_close(loss.grad(z, y), want, 1e-10, slip)
    with pytest.raises(AssertionError, match="relative error"):
        assert_trees_close(wrong_grad(z, y), want, 1e-10, slip)
