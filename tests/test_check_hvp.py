"""check_hvp: Hessian-vector products of the hand-derived gradient (jax.jvp of bp.backprop)
against forward-over-reverse autodiff and finite differences of the gradient. A backward right
in value but blocked by stop_gradient passes every first-order check and is caught here,
located to its layer or to the loss; every built-in network passes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp as bp
from jaxbp import cases

RNG = np.random.default_rng(0)
X = RNG.standard_normal((5, 4))
Y = jax.nn.one_hot(np.arange(5) % 3, 3)
CE = bp.softmax_cross_entropy()


def _mlp(middle):
    return bp.serial(bp.dense(6), middle, bp.dense(3))


PARAMS = _mlp(bp.tanh()).init(jax.random.key(0), (4,))[0]


def _with_backward(layer, backward):
    return layer._replace(backward=backward)


def _tanh_blocked():
    """tanh whose ``dx = dy · (1 − y²)`` has the factor behind stop_gradient: right in value."""
    layer = bp.tanh()

    def backward(params, cache, dy):
        dparams, dx = layer.backward(params, cache, dy)
        return dparams, jax.lax.stop_gradient(dx / dy) * dy

    return _with_backward(layer, backward)


def _dense_blocked():
    """dense whose ``dW = aᵀ dz`` takes ``a`` through stop_gradient: right in value."""
    layer = bp.dense(3)

    def backward(params, cache, dy):
        dparams, dx = layer.backward(params, cache, dy)
        return dparams._replace(w=jax.lax.stop_gradient(cache).T @ dy), dx  # cache: a

    return _with_backward(layer, backward)


def test_right_network_passes_with_penalties():
    report = bp.check_hvp(_mlp(bp.tanh()), CE, PARAMS, X, Y, l2=1e-2)
    assert report.ok, report
    assert [r.path for r in report.rows] == ["layers[0].w", "layers[0].b", "layers[2].w",
                                             "layers[2].b"]


def test_stop_gradient_in_activation_backward_is_caught_and_located():
    net = _mlp(_tanh_blocked())
    assert bp.check_gradients(net, CE, PARAMS, X, Y).ok  # right in value: first order passes
    report = bp.check_hvp(net, CE, PARAMS, X, Y)
    assert not report.ok
    assert {r.path for r in report.failures} == {"layers[0].w", "layers[0].b"}
    assert report.location.startswith("layer 1 (tanh)")
    assert report.local.row("x").status == "FAIL"
    assert "stop_gradient" in report.hints[0]


def test_stop_gradient_in_weight_gradient_is_caught_and_located():
    net = bp.serial(bp.dense(6), bp.tanh(), _dense_blocked())
    assert bp.check_gradients(net, CE, PARAMS, X, Y).ok
    report = bp.check_hvp(net, CE, PARAMS, X, Y)
    assert not report.ok and report.location.startswith("layer 2 (dense(3))")
    assert "w" in {r.path for r in report.local.failures}


def test_stop_gradient_in_loss_grad_is_located_to_the_loss():
    blocked = bp.Loss(CE.value, lambda p, y: jax.lax.stop_gradient(CE.grad(p, y)), "blocked_ce")
    report = bp.check_hvp(_mlp(bp.tanh()), blocked, PARAMS, X, Y)
    assert not report.ok and report.location.startswith("loss (blocked_ce)")


def test_grad_fn_is_what_is_checked():
    net = _mlp(_tanh_blocked())
    assert bp.check_hvp(net, CE, PARAMS, X, Y, grad_fn=bp.autodiff(net, CE)).ok


NETWORKS = ("mlp", "dropout", "max_pool_ties", "residual")


@pytest.mark.parametrize("name", NETWORKS)
def test_built_in_networks_pass(name):
    case = next(c for c in cases.LAYER_CASES if c.name == name)
    net = case.make()
    params, out = net.init(jax.random.key(1), case.input_shape)
    x = case.draw(RNG, (2, *case.input_shape))
    y = RNG.standard_normal((2, *out))
    key = jax.random.key(2) if case.training else None
    report = bp.check_hvp(net, bp.mse(), params, x, y, key=key)
    assert report.ok, report


def test_bad_directions_named():
    with pytest.raises(ValueError, match=r"check_hvp: directions=0"):
        bp.check_hvp(_mlp(bp.tanh()), CE, PARAMS, X, Y, directions=0)


def test_integer_inputs_have_no_x_row():
    net = bp.serial(bp.embedding(6, 3), bp.flatten(), bp.dense(2))
    params, _ = net.init(jax.random.key(0), (4,))
    x = jnp.asarray(RNG.integers(0, 6, (3, 4)), jnp.int32)
    assert bp.check_hvp(net, bp.mse(), params, x, RNG.standard_normal((3, 2))).ok
