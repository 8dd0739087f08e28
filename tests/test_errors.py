"""Bad input at the core level raises early, in Python, naming the layer and both shapes."""

import jax
import jax.numpy as jnp
import pytest

import jaxbp as bp


@pytest.fixture(scope="module")
def net_and_params():
    net = bp.serial(bp.dense(8), bp.tanh(), bp.dense(1), bp.sigmoid())
    params, _ = net.init(jax.random.key(0), (2,))
    return net, params


def test_feature_size_mismatch_names_layer_and_shapes(net_and_params):
    net, params = net_and_params
    with pytest.raises(ValueError, match=r"serial layer 0 \(dense\(8\)\): input x has shape "
                                         r"\(4, 3\).*\(batch, \*\(2,\)\).*w\.shape=\(2, 8\)"):
        net.forward(params, jnp.ones((4, 3)))


@pytest.mark.parametrize("grad", [bp.backprop, bp.autodiff], ids=["backprop", "autodiff"])
def test_feature_size_mismatch_under_jit_and_gradients(net_and_params, grad):
    net, params = net_and_params
    f = jax.jit(grad(net, bp.mse()))
    with pytest.raises(ValueError, match=r"layer 0 \(dense\(8\)\): input x has shape \(4, 3\)"):
        f(params, jnp.ones((4, 3)), jnp.ones((4, 1)))


def test_missing_batch_axis_is_explained(net_and_params):
    net, params = net_and_params
    with pytest.raises(ValueError, match=r"input x has shape \(2,\).*expects \(batch, \*\(2,\)\)"):
        net.forward(params, jnp.ones((2,)))


@pytest.mark.parametrize("grad", [bp.backprop, bp.autodiff], ids=["backprop", "autodiff"])
def test_label_shape_mismatch_names_loss_and_shapes(net_and_params, grad):
    net, params = net_and_params
    with pytest.raises(ValueError, match=r"mse: y_true has shape \(4,\) but y_pred has shape "
                                         r"\(4, 1\).*Fix: reshape y_true"):
        grad(net, bp.mse())(params, jnp.ones((4, 2)), jnp.ones((4,)))


def test_softmax_ce_label_shape(net_and_params):
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: y_true has shape \(3, 5\) but "
                                         r"y_pred \(logits\) has shape \(4, 5\)"):
        bp.softmax_cross_entropy().value(jnp.zeros((4, 5)), jnp.zeros((3, 5)))


def test_serial_rejects_uncalled_factory():
    with pytest.raises(TypeError, match=r"serial: argument 1 is function.*bp\.relu\(\)"):
        bp.serial(bp.dense(3), bp.relu)


def test_params_of_another_network(net_and_params):
    net, _ = net_and_params
    other, _ = bp.serial(bp.dense(3)).init(jax.random.key(0), (2,))
    with pytest.raises(ValueError, match=r"params must be a tuple with one entry per layer \(4\), "
                                         r"got a tuple of length 1"):
        net.forward(other, jnp.ones((4, 2)))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_dense_size_must_be_positive_int(bad):
    with pytest.raises(ValueError, match=rf"dense: d_out={bad!r} must be a positive int"):
        bp.dense(bad)


def test_unknown_initialiser_lists_choices():
    with pytest.raises(ValueError, match=r"w_init='kaiming'.*'he_normal'"):
        bp.dense(3, w_init="kaiming")


def test_int_input_shape_suggests_tuple():
    with pytest.raises(TypeError, match=r"input_shape=2 is an int.*pass \(2,\)"):
        bp.dense(3).init(jax.random.key(0), 2)


def test_serial_init_names_failing_layer():
    def bad_init(key, shape, dtype=None):
        raise ValueError(f"cannot initialise {shape}")
    with pytest.raises(ValueError, match=r"serial layer 1 \(dense\(3\)\): cannot initialise "
                                         r"\(4, 3\)"):
        bp.serial(bp.dense(4), bp.dense(3, w_init=bad_init)).init(jax.random.key(0), (2,))
    with pytest.raises(ValueError, match=r"serial: input_shape=\(0,\) is invalid"):
        bp.serial(bp.dense(3)).init(jax.random.key(0), (0,))


@pytest.mark.parametrize("arg,value", [("l1", -1.0), ("l2", float("nan"))])
@pytest.mark.parametrize("source", [bp.backprop, bp.autodiff], ids=["backprop", "autodiff"])
def test_negative_or_nan_penalty(arg, value, source):
    with pytest.raises(ValueError, match=rf"^{source.__name__}: {arg}=.* must be a "
                                         rf"non-negative number"):
        source(bp.dense(1), bp.mse(), **{arg: value})


def test_loss_factory_not_called():
    with pytest.raises(TypeError, match=r"loss must be a jaxbp Loss.*bp\.mse\(\)"):
        bp.backprop(bp.dense(1), bp.mse)


def test_initialisers_have_the_stated_scale():
    key = jax.random.key(0)
    w = bp.he_normal(key, (400, 300))
    assert abs(float(jnp.std(w)) - (2 / 400) ** 0.5) < 0.05 * (2 / 400) ** 0.5
    w = bp.glorot_uniform(key, (400, 300))
    limit = (6 / 700) ** 0.5
    assert float(jnp.max(jnp.abs(w))) <= limit
    assert abs(float(jnp.std(w)) - limit / 3 ** 0.5) < 0.05 * limit
    params, _ = bp.dense(7, w_init="he_uniform").init(key, (3,))
    assert params.w.shape == (3, 7) and params.b.shape == (7,)
    assert float(jnp.abs(params.b).max()) == 0
