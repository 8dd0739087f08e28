"""Each loss's hand-derived gradient equals jax.grad of its value; extremes stay finite."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxbp as bp
from support import assert_trees_close


def _targets(kind, rng, shape):
    """Targets of the right kind for each loss."""
    if kind == "int_labels":
        return jnp.asarray(rng.integers(0, shape[1], shape[0]))
    if kind == "one_hot":
        return jax.nn.one_hot(jnp.asarray(rng.integers(0, shape[1], shape[0])), shape[1],
                              dtype=jnp.float64)
    if kind == "binary":
        return jnp.asarray(rng.integers(0, 2, shape), jnp.float64)
    return jnp.asarray(rng.standard_normal(shape))


def _predictions(kind, rng, shape):
    z = rng.standard_normal(shape) * 3.0
    if kind == "probabilities":
        return jnp.asarray(1.0 / (1.0 + np.exp(-z)))
    return jnp.asarray(z)


# (loss factory, prediction kind, target kind)
CASES = {
    "mse": (bp.mse, "real", "real"),
    "binary_cross_entropy": (bp.binary_cross_entropy, "probabilities", "binary"),
    "bce_soft_targets": (bp.binary_cross_entropy, "probabilities", "probabilities"),
    "sigmoid_binary_cross_entropy": (bp.sigmoid_binary_cross_entropy, "real", "binary"),
    "softmax_ce_int_labels": (bp.softmax_cross_entropy, "real", "int_labels"),
    "softmax_ce_one_hot": (bp.softmax_cross_entropy, "real", "one_hot"),
}


def _make(case, batch, k, seed):
    make, pred_kind, target_kind = CASES[case]
    rng = np.random.default_rng(seed)
    shape = (batch, k)
    y_pred = _predictions(pred_kind, rng, shape)
    if target_kind == "probabilities":
        y_true = jnp.asarray(rng.uniform(0, 1, shape))
    else:
        y_true = _targets(target_kind, rng, shape)
    return make(), y_pred, y_true


@pytest.mark.parametrize("case", sorted(CASES))
# Each draw is a new shape, hence new compiles: 5 per case, the first the smallest (1, 2).
# Both gradients in one jitted program: one compile per draw (~0.07 s) where eagerly every
# primitive compiled anew for the shape (~0.6 s); the eager path runs in test_float32_path
# and, in float64, through backprop in test_networks.py.
@settings(max_examples=5)
@given(batch=st.integers(1, 6), k=st.integers(2, 5), seed=st.integers(0, 2**16))
def test_grad_matches_jax_grad(case, batch, k, seed):
    loss, y_pred, y_true = _make(case, batch, k, seed)
    got, want = jax.jit(lambda p, t: (loss.grad(p, t), jax.grad(loss.value)(p, t)))(y_pred,
                                                                                   y_true)
    assert_trees_close(got, want, 1e-10, case)


@pytest.mark.parametrize("case", sorted(CASES))
def test_grad_matches_jax_grad_jit(case):
    loss, y_pred, y_true = _make(case, 3, 4, 0)
    got = jax.jit(loss.grad)(y_pred, y_true)
    want = jax.jit(jax.grad(loss.value))(y_pred, y_true)
    assert_trees_close(got, want, 1e-10, case)
    assert np.isclose(float(jax.jit(loss.value)(y_pred, y_true)), float(loss.value(y_pred, y_true)),
                      rtol=1e-12)


@pytest.mark.parametrize("case", sorted(CASES))
def test_float32_path(case):
    loss, y_pred, y_true = _make(case, 4, 3, 1)
    y_pred = y_pred.astype(jnp.float32)
    y_true = y_true if y_true.dtype.kind == "i" else y_true.astype(jnp.float32)
    got = loss.grad(y_pred, y_true)
    assert got.dtype == jnp.float32
    assert_trees_close(got, jax.grad(loss.value)(y_pred, y_true), 1e-5, case)


def test_values_match_textbook_formulas():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((5, 4))
    labels = rng.integers(0, 4, 5)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    want_ce = -np.mean(np.log(p[np.arange(5), labels]))
    assert np.isclose(float(bp.softmax_cross_entropy().value(jnp.asarray(z), jnp.asarray(labels))),
                      want_ce, rtol=1e-12)
    t = rng.integers(0, 2, (5, 4)).astype(float)
    s = 1 / (1 + np.exp(-z))
    want_bce = -np.mean(t * np.log(s) + (1 - t) * np.log(1 - s))
    for loss, pred in [(bp.sigmoid_binary_cross_entropy(), z), (bp.binary_cross_entropy(), s)]:
        assert np.isclose(float(loss.value(jnp.asarray(pred), jnp.asarray(t))), want_bce,
                          rtol=1e-10)
    assert np.isclose(float(bp.mse().value(jnp.asarray(z), jnp.asarray(t))),
                      np.mean((z - t) ** 2), rtol=1e-12)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("case", ["sigmoid_binary_cross_entropy", "softmax_ce_int_labels",
                                  "softmax_ce_one_hot"])
def test_logits_at_plus_minus_1000_are_finite(case, dtype):
    make, _, target_kind = CASES[case]
    loss = make()
    z = jnp.asarray([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 1000.0]], dtype)
    y = _targets(target_kind, np.random.default_rng(0), z.shape)
    y = y if y.dtype.kind == "i" else y.astype(dtype)
    for out in (loss.value(z, y), loss.grad(z, y), jax.grad(loss.value)(z, y)):
        assert np.all(np.isfinite(np.asarray(out))), (case, out)
    # A confidently wrong logit costs about 2000/n, not inf.
    assert float(loss.value(z, y)) > 0


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_bce_probabilities_exactly_zero_and_one(dtype):
    loss = bp.binary_cross_entropy()
    p = jnp.asarray([[0.0, 1.0, 0.0, 1.0]], dtype)
    y = jnp.asarray([[0.0, 1.0, 1.0, 0.0]], dtype)
    value, grad = loss.value(p, y), loss.grad(p, y)
    auto = jax.grad(loss.value)(p, y)
    for out in (value, grad, auto):
        assert np.all(np.isfinite(np.asarray(out)))
    # Wrong saturated predictions still push the right way (p=0 with y=1: gradient negative).
    assert float(grad[0, 2]) < 0 < float(grad[0, 3])
    assert_trees_close(grad, auto, 1e-6 if dtype == jnp.float32 else 1e-12, "bce at 0/1")


@pytest.mark.parametrize("case", sorted(CASES))
def test_wrong_label_shape_names_both_shapes(case):
    loss, y_pred, _ = _make(case, 4, 3, 0)
    with pytest.raises(ValueError, match=r"y_true has shape \(5,.*y_pred.*\(4, 3\)"):
        loss.value(y_pred, jnp.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"y_true has shape \(5,"):
        loss.grad(y_pred, jnp.zeros((5, 3)))


def test_mse_column_vector_vs_flat_targets_suggests_reshape():
    with pytest.raises(ValueError, match=r"\(4,\).*\(4, 1\).*Fix: reshape y_true"):
        bp.mse().value(jnp.zeros((4, 1)), jnp.zeros((4,)))


def test_float_labels_rejected_with_fix():
    with pytest.raises(TypeError, match=r"integer class indices.*astype\(jnp.int32\)"):
        bp.softmax_cross_entropy().value(jnp.zeros((4, 3)), jnp.zeros((4,)))
