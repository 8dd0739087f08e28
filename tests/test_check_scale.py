"""Sampled finite differences (large checks): manual vs autodiff on every element, finite
differences at a few elements and along random directions per leaf. A sparse error (one wrong
element, one wrong row) is still caught, named to its element and located; a wrong custom rule
that manual and autodiff share is still caught. (The 670k-parameter figures:
``python -m benchmarks.check_scale``, in docs/checking.md.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp as bp
from jaxbp.check import report as _report

NET = bp.serial(bp.dense(128), bp.relu(), bp.dense(128), bp.tanh(), bp.dense(10))
LOSS = bp.softmax_cross_entropy()


@pytest.fixture(scope="module")
def data():
    params, _ = NET.init(jax.random.key(0), (256,))
    rng = np.random.default_rng(0)
    return params, rng.standard_normal((8, 256)), rng.integers(0, 10, 8)


def _slipped(kind):
    """NET with one wrong element (3, 5) or one wrong row 7 in layer 2's hand-derived dw."""
    layer = NET.sublayers[2]

    def backward(params, cache, dy):
        dparams, dx = layer.backward(params, cache, dy)
        w = dparams.w.at[3, 5].multiply(1.5) if kind == "element" else dparams.w.at[7].multiply(-1)
        return dparams._replace(w=w), dx

    subs = list(NET.sublayers)
    subs[2] = layer._replace(backward=backward)
    return bp.serial(*subs)


def test_a_correct_network_passes_with_sampled_differences(data):
    params, x, y = data
    assert bp.count_params(params) == 50_698 > bp.check.FULL_FD_MAX
    report = bp.check_gradients(NET, LOSS, params, x, y)
    assert report.ok, report
    assert "sampled: manual vs autodiff on every element" in report.settings
    for r in report.rows:
        assert r.status == "ok" and r.max_rel_err < 1e-12 and np.isfinite(r.finite_diff), report


@pytest.mark.parametrize("kind", ["element", "row"])
def test_a_sparse_error_is_named_to_its_element_and_located(data, kind):
    params, x, y = data
    report = bp.check_gradients(_slipped(kind), LOSS, params, x, y)
    assert [r.path for r in report.failures] == ["layers[2].w"], report
    row = report.row("layers[2].w")
    assert row.verdict == _report.DERIVATION
    if kind == "element":
        assert row.index == (3, 5) and np.isclose(row.manual, 1.5 * row.autodiff)
    else:
        assert row.index[0] == 7 and np.isclose(row.manual, -row.autodiff)
    assert report.location == "layer 2 (dense(128)): dw wrong"


@jax.custom_vjp
def leaky_identity(x):
    return x


def _leaky_fwd(x):
    return x, None


def _leaky_bwd(_, g):
    return (g.at[..., 0].multiply(2.0),)  # wrong in one column only: a sparse shared error


leaky_identity.defvjp(_leaky_fwd, _leaky_bwd)


def _through(rule):
    def forward(params, x, *, key=None):
        return rule(x), None

    def backward(params, cache, dy):
        return (), jax.vjp(rule, jnp.zeros_like(dy))[1](dy)[0]

    return bp.Layer(lambda key, s: ((), tuple(s)), forward, backward, "through")


def test_a_sparse_shared_custom_rule_error_is_caught_along_random_directions():
    # 16,000 inputs, 1 in 500 of them wrong, manual == autodiff: the few sampled elements
    # probably miss it; the directional derivatives of the leaf do not.
    report = bp.check_layer(_through(leaky_identity), (500,), batch_sizes=(32,), draws=1)
    assert not report.ok, report
    row = report.row("x")
    assert row.verdict == _report.ALONG + _report.SHARED and row.max_rel_err == 0.0
    assert row.index is None  # a direction decided, not one element
    assert "leaky_identity (custom_vjp" in report.forward.custom_rules[0]


def test_sampled_and_full_agree_on_a_small_slip():
    wrong = bp.tanh()._replace(backward=lambda p, y, dy: ((), dy * (1 + y * y)))
    net = bp.serial(bp.dense(4), wrong, bp.dense(2))
    params, _ = net.init(jax.random.key(0), (3,))
    x, y = np.ones((2, 3)), np.zeros((2, 2))
    full = bp.check_gradients(net, bp.mse(), params, x, y, fd="full")
    sampled = bp.check_gradients(net, bp.mse(), params, x, y, fd="sampled")
    assert full.location == sampled.location == "layer 1 (tanh): dx wrong"
    assert [r.path for r in full.failures] == [r.path for r in sampled.failures]
    assert bp.check_gradients(NET, LOSS, *NET.init(jax.random.key(1), (3,))[:1],
                              np.ones((2, 3)), np.zeros(2, int), fd="sampled").ok
