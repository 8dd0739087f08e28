"""as_custom_vjp: jax.grad runs the hand-derived backward; a malformed backward is named."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp as bp
from support import assert_trees_close

NET = bp.serial(bp.dense(4), bp.tanh(), bp.dense(2), bp.sigmoid())


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.standard_normal((3, 5))), jnp.asarray(rng.uniform(0, 1, (3, 2)))


def test_grad_through_the_bridge_is_the_hand_derived_gradient():
    params, _ = NET.init(jax.random.key(0), (5,))
    x, y = _data()
    apply = bp.as_custom_vjp(NET)
    loss = bp.mse()

    @jax.jit
    def grads(p):
        return jax.grad(lambda p: loss.value(apply(p, x), y))(p)

    manual = jax.jit(bp.backprop(NET, loss))(params, x, y)[1]
    assert_trees_close(grads(params), manual, 1e-12, "bridge")
    assert_trees_close(grads(params), jax.jit(bp.autodiff(NET, loss))(params, x, y)[1], 1e-10,
                       "autodiff")
    np.testing.assert_allclose(apply(params, x), NET.forward(params, x)[0], rtol=1e-15)


def test_the_bridge_really_runs_the_manual_backward():
    wrong = bp.tanh()._replace(backward=lambda p, y, dy: ((), -dy * (1 - y * y)))
    x = jnp.asarray([[0.3, -1.2]])
    g = jax.grad(lambda x: jnp.sum(bp.as_custom_vjp(wrong)((), x)))(x)
    np.testing.assert_allclose(g, -(1 - jnp.tanh(x) ** 2), rtol=1e-14)


def test_key_reaches_a_stochastic_forward():
    def forward(params, x, *, key=None):
        mask = (jax.random.uniform(key, x.shape) > 0.5).astype(x.dtype)
        return x * mask, mask
    layer = bp.Layer(lambda k, s: ((), s), forward, lambda p, mask, dy: ((), dy * mask), "mask")
    x, key = jnp.ones((2, 6)), jax.random.key(3)
    apply = bp.as_custom_vjp(layer)
    g = jax.grad(lambda x: jnp.sum(apply((), x, key)))(x)
    np.testing.assert_array_equal(g, forward((), x, key=key)[1])


def test_integer_inputs_get_a_zero_cotangent():
    def forward(table, ids, *, key=None):
        return table[ids], ids

    def backward(table, ids, dy):
        return jnp.zeros_like(table).at[ids].add(dy), None
    lookup = bp.Layer(lambda k, s: (jnp.zeros((4, 2)), (*s, 2)), forward, backward, "lookup")
    table = jnp.arange(8.0).reshape(4, 2)
    ids = jnp.asarray([[0, 3, 3]])
    g = jax.grad(lambda t: jnp.sum(bp.as_custom_vjp(lookup)(t, ids)))(table)
    np.testing.assert_array_equal(g, [[1, 1], [0, 0], [0, 0], [2, 2]])


def _dense_returning(make_grads):
    good = bp.dense(3)
    return good._replace(backward=lambda p, x, dy: make_grads(p, x, dy))


def _grad_of(layer):
    params, _ = layer.init(jax.random.key(0), (2,))
    x = jnp.ones((4, 2))
    return jax.grad(lambda p: jnp.sum(bp.as_custom_vjp(layer)(p, x)))(params)


def test_wrong_structure_names_the_leaves():
    layer = _dense_returning(lambda p, x, dy: ((x.T @ dy, jnp.sum(dy, 0)), dy @ p.w.T))
    with pytest.raises(ValueError, match=r"dense\(3\).*structure.*missing params\.w, params\.b; "
                       r"unexpected dparams\[0\], dparams\[1\].*same NamedTuple"):
        _grad_of(layer)


def test_wrong_shape_names_the_leaf_and_suspects_a_transpose():
    layer = _dense_returning(lambda p, x, dy: (bp.DenseParams(dy.T @ x, jnp.sum(dy, 0)),
                                               dy @ p.w.T))
    with pytest.raises(ValueError, match=r"dparams\.w has shape \(3, 2\), but params\.w has shape "
                       r"\(2, 3\) \(transposed\?\)"):
        _grad_of(layer)


def test_wrong_dx_shape_and_non_pair_are_named():
    layer = _dense_returning(lambda p, x, dy: (bp.DenseParams(x.T @ dy, jnp.sum(dy, 0)), dy))
    with pytest.raises(ValueError, match=r"dx has shape \(4, 3\), but x has shape \(4, 2\)"):
        jax.grad(lambda x: jnp.sum(bp.as_custom_vjp(layer)(layer.init(
            jax.random.key(0), (2,))[0], x)))(jnp.ones((4, 2)))
    with pytest.raises(TypeError, match=r"must return a pair \(dparams, dx\)"):
        _grad_of(_dense_returning(lambda p, x, dy: dy))
    with pytest.raises(TypeError, match=r"as_custom_vjp: layer must be a jaxbp Layer"):
        bp.as_custom_vjp(bp.relu)
