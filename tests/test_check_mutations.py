"""The mutation suite: seeded derivation slips in layers and losses are caught, located at the
right layer and leaf, and given the right hint.

The good layers are built once so that their compiled witnesses are shared between the cases
(the checker caches them per layer object and shape).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp as bp

D0, TANH, D2, SIG = bp.dense(4), bp.tanh(), bp.dense(4), bp.sigmoid()
GOOD = [D0, TANH, D2, SIG]
MSE = bp.mse()


def dense_slip(layer, slip):
    """``layer`` (a dense) with one seeded slip in its backward; the cache is ``x``."""

    def backward(params, x, dy):
        w, _ = params
        dw, db, dx = x.T @ dy, jnp.sum(dy, axis=0), dy @ w.T
        if slip == "db_mean":
            db = jnp.mean(dy, axis=0)
        elif slip == "dw_transposed":
            dw = dy.T @ x
        elif slip == "db_wrong_axis":
            db = jnp.sum(dy, axis=1)
        elif slip == "dw_and_db_doubled":
            dw, db = 2 * dw, 2 * db
        return bp.DenseParams(dw, db), dx

    return layer._replace(backward=backward)


def activation_slip(layer, slip):
    """sigmoid/tanh (cache ``y``) with a slip in ``dx``."""
    local = {"sigmoid": lambda y: y * (1 - y), "tanh": lambda y: 1 - y * y}[layer.name]

    def backward(params, y, dy):
        if slip == "no_derivative":
            return (), dy
        if slip == "sign":
            return (), -dy * local(y)
        raise AssertionError(slip)

    return layer._replace(backward=backward)


def loss_slip(loss, slip):
    def grad(y_pred, y_true):
        n, batch = y_pred.size, y_pred.shape[0]
        if slip == "mse_no_mean":
            return 2.0 * (y_pred - y_true)
        if slip == "ce_sign":
            p = jax.nn.softmax(y_pred, axis=-1)
            return (jax.nn.one_hot(y_true, y_pred.shape[1], dtype=y_pred.dtype) - p) / batch
        if slip == "bce_sum":
            return jax.nn.sigmoid(y_pred) - y_true
        raise AssertionError((slip, n))

    return loss._replace(grad=grad)


def _data(batch, seed=0):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.standard_normal((batch, 3))),
            jnp.asarray(rng.uniform(0.1, 0.9, (batch, 4))))


def _net_with(i, layer):
    layers = list(GOOD)
    layers[i] = layer
    return bp.serial(*layers)


def _params(net):
    return net.init(jax.random.key(1), (3,))[0]


# (id, wrong layer index, mutated layer, batch, location, leaf of the located layer, hint)
NETWORK_SLIPS = [
    ("sigmoid_missing_derivative", 3, activation_slip(SIG, "no_derivative"), 5,
     "layer 3 (sigmoid): dx wrong", "x", "missing activation derivative"),
    ("tanh_sign_error", 1, activation_slip(TANH, "sign"), 5,
     "layer 1 (tanh): dx wrong", "x", "sign error"),
    ("dense_db_mean_over_batch", 2, dense_slip(D2, "db_mean"), 5,
     "layer 2 (dense(4)): db wrong", "b", "mean instead of sum over the batch"),
    ("dense_dw_transposed", 2, dense_slip(D2, "dw_transposed"), 5,
     "layer 2 (dense(4)): dw wrong", "w", "transposed weight gradient"),
    ("dense_db_wrong_axis", 0, dense_slip(D0, "db_wrong_axis"), 5,
     "layer 0 (dense(4)): db wrong", "b", "reduced over the wrong axis"),
]


@pytest.mark.parametrize("case", NETWORK_SLIPS, ids=[c[0] for c in NETWORK_SLIPS])
def test_layer_slip_in_a_network_is_caught_located_and_explained(case):
    _, index, wrong, batch, location, leaf, hint = case
    net = _net_with(index, wrong)
    x, y = _data(batch)
    report = bp.check_gradients(net, MSE, _params(net), x, y)
    assert not report.ok
    assert report.location == location, report
    assert [r.path for r in report.local.failures] == [leaf], report
    assert any(hint in h for h in report.hints), report
    assert "derivation error" in report.local.failures[0].verdict
    # The slip's own parameters are among the failing network leaves (every one is reported).
    failing = {r.path for r in report.failures}
    if leaf != "x":
        assert failing == {f"layers[{index}].{leaf}"}, report
    else:
        assert failing == {f"layers[{i}].{p}" for i in range(index) if GOOD[i].name.startswith(
            "dense") for p in "wb"}, report


def test_bias_reduced_over_the_wrong_axis_with_matching_shapes():
    """batch == d_out: the wrong reduction has the right shape; its total still matches."""
    report = bp.check_layer(dense_slip(bp.dense(3), "db_wrong_axis"), (2,), batch_sizes=(3,))
    assert report.location == "dense(3): db wrong"
    assert [r.path for r in report.failures] == ["b"]
    assert "reduced over the wrong axis" in report.row("b").hint


def test_every_failing_leaf_is_reported_not_only_the_first():
    report = bp.check_layer(dense_slip(bp.dense(3), "dw_and_db_doubled"), (2,))
    assert [r.path for r in report.failures] == ["w", "b"]
    assert report.location == "dense(3): dw, db wrong"
    assert all("factor of 2" in r.hint for r in report.failures)
    assert report.row("x").status == "ok"


@pytest.mark.parametrize("penalty,hint", [("l2", "missing L2 regularisation term"),
                                          ("l1", "missing L1 regularisation term")])
def test_missing_regularisation_term_is_located_in_the_penalty(penalty, hint):
    net = bp.serial(*GOOD)
    x, y = _data(5)
    coeff = {penalty: 0.1}
    data_only = bp.backprop(net, MSE)  # the slip: the penalty's gradient is never added
    report = bp.check_gradients(net, MSE, _params(net), x, y, grad_fn=data_only, **coeff)
    assert {r.path for r in report.failures} == {"layers[0].w", "layers[2].w"}, report
    assert report.location.startswith("regularisation"), report
    assert all(hint in r.hint for r in report.failures)
    assert bp.check_gradients(net, MSE, _params(net), x, y, **coeff).ok


LOSS_SLIPS = [
    ("mse_missing_1_over_n", loss_slip(bp.mse(), "mse_no_mean"), (4, 3), "float",
     "missing 1/n: manual = 12"),
    ("softmax_ce_sign_error", loss_slip(bp.softmax_cross_entropy(), "ce_sign"), (4, 3), "labels",
     "sign error"),
    ("sigmoid_bce_sum_instead_of_mean",
     loss_slip(bp.sigmoid_binary_cross_entropy(), "bce_sum"), (4, 1), "binary",
     "sum instead of mean over the batch"),
]


@pytest.mark.parametrize("case", LOSS_SLIPS, ids=[c[0] for c in LOSS_SLIPS])
def test_loss_slip_is_caught_and_explained(case):
    _, loss, shape, kind, hint = case
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.standard_normal(shape))
    t = {"float": lambda: jnp.asarray(rng.standard_normal(shape)),
         "labels": lambda: jnp.asarray(rng.integers(0, shape[1], shape[0])),
         "binary": lambda: jnp.asarray(rng.integers(0, 2, shape), jnp.float64)}[kind]()
    report = bp.check_loss(loss, y_pred=z, y_true=t)
    assert report.location == f"loss ({loss.name}): gradient wrong"
    assert [r.path for r in report.failures] == ["y_pred"]
    assert hint in report.row("y_pred").hint, report
    # In a network, the loss is the first place looked at in backward order.
    net = bp.serial(bp.dense(shape[1]))
    params = net.init(jax.random.key(0), (3,))[0]
    x = jnp.asarray(rng.standard_normal((shape[0], 3)))
    rep = bp.check_gradients(net, loss, params, x, t)
    assert rep.location == f"loss ({loss.name}): gradient wrong", rep
    assert any(hint in h for h in rep.hints)


def test_slip_inside_a_nested_serial_is_located_through_both_levels():
    inner = bp.serial(bp.dense(4), activation_slip(bp.sigmoid(), "no_derivative"))
    net = bp.serial(bp.dense(3), bp.tanh(), inner)
    report = bp.check_layer(net, (2,), batch_sizes=(3,), draws=1)
    assert report.location == "layer 2 (serial(dense(4), sigmoid)) › layer 1 (sigmoid): dx wrong"
    assert "missing activation derivative" in report.hints[0]
