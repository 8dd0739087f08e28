"""multi_head_attention and residual: hand-derived backward vs jax.vjp, masks, errors, and
seeded wrong attention derivations that the checker must catch and name."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxbp as bp
from jaxbp.layers.attention import AttentionCache
from support import assert_layer_matches_vjp


@settings(max_examples=8)
@given(heads=st.sampled_from([1, 2, 4]), width=st.integers(1, 2), time=st.sampled_from([1, 3, 5]),
       batch=st.integers(1, 3), causal=st.booleans(), seed=st.integers(0, 2**16))
def test_attention_backward_matches_vjp(heads, width, time, batch, causal, seed):
    """Odd and unit sequence lengths, several head counts, batch 1 included."""
    assert_layer_matches_vjp(bp.multi_head_attention(heads, causal=causal),
                             (time, heads * width), batch=batch, seed=seed, jit=True)


def test_attention_float32_path():
    assert_layer_matches_vjp(bp.multi_head_attention(2, causal=True), (5, 4), batch=2, seed=3,
                             rtol=1e-5, dtype=jnp.float32)


def test_causal_attention_ignores_the_future():
    layer = bp.multi_head_attention(2, causal=True)
    params, _ = layer.init(jax.random.key(0), (6, 4))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 6, 4)))
    later = x.at[:, 3:].set(7.0)          # change positions 3..5 only
    y, y_later = layer.forward(params, x)[0], layer.forward(params, later)[0]
    np.testing.assert_allclose(y[:, :3], y_later[:, :3], rtol=1e-12, atol=1e-12)
    assert not np.allclose(y[:, 3:], y_later[:, 3:])
    # Without the mask the first position sees the change.
    free = bp.multi_head_attention(2)
    assert not np.allclose(free.forward(params, x)[0][:, 0], free.forward(params, later)[0][:, 0])


def test_attention_matches_a_written_out_single_head():
    """One head, no projections' bias: y = softmax(q k^T / sqrt(d)) v w_o, computed by hand."""
    layer = bp.multi_head_attention(1)
    params, _ = layer.init(jax.random.key(1), (3, 2))
    x = jnp.asarray(np.random.default_rng(1).standard_normal((1, 3, 2)))
    q, k, v = (x[0] @ params.w_qkv[:, i * 2:(i + 1) * 2] for i in range(3))
    s = q @ k.T / math.sqrt(2)
    p = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(layer.forward(params, x)[0][0], p @ v @ params.w_o, rtol=1e-12)


# --------------------------------------------------------------------------------------
# Seeded wrong derivations: each must fail check_layer, named to the leaf it breaks.

def _slipped_backward(layer, slip):
    """The attention backward written out again with one classic slip."""

    def backward(params, cache: AttentionCache, dy):
        w_qkv, _, w_o, _ = params
        x, q, k, v, p, o = cache
        b, h, t, e = q.shape

        def split(a):
            return a.reshape(b, t, h, e).transpose(0, 2, 1, 3)

        def merge(a):
            return a.transpose(0, 2, 1, 3).reshape(b, t, h * e)

        scale = 1.0 if slip == "no_scale" else 1.0 / math.sqrt(e)
        do = split(dy @ w_o.T)
        dv = jnp.swapaxes(p, -1, -2) @ do
        dp = do @ jnp.swapaxes(v, -1, -2)
        ds = dp * p if slip == "no_softmax_jacobian" else (
            p * (dp - jnp.sum(dp * p, axis=-1, keepdims=True)))
        dq = ds @ k * scale
        dk = (ds @ q if slip == "dk_not_transposed" else jnp.swapaxes(ds, -1, -2) @ q) * scale
        dqkv = jnp.concatenate([merge(g) for g in (dq, dk, dv)], axis=-1)
        rows = dqkv.reshape(-1, dqkv.shape[-1])
        dw_o = o.reshape(-1, o.shape[-1]).T @ dy.reshape(-1, dy.shape[-1])
        return (bp.AttentionParams(x.reshape(-1, x.shape[-1]).T @ rows, jnp.sum(rows, axis=0),
                                   dw_o, jnp.sum(dy, axis=(0, 1))),
                dqkv @ w_qkv.T)

    return layer._replace(backward=backward)


def test_the_slip_free_rewrite_passes():
    report = bp.check_layer(_slipped_backward(bp.multi_head_attention(2), None), (3, 4),
                            batch_sizes=(2,), draws=1)
    assert report.ok, report


@pytest.mark.parametrize("slip, leaf", [("no_softmax_jacobian", "w_qkv"),
                                        ("no_scale", "w_qkv"),
                                        ("dk_not_transposed", "w_qkv")])
def test_seeded_attention_slips_are_caught_and_named(slip, leaf):
    report = bp.check_layer(_slipped_backward(bp.multi_head_attention(2, causal=True), slip),
                            (3, 4), batch_sizes=(2,), draws=1)
    assert not report.ok
    failed = {r.path for r in report.failures}
    assert leaf in failed and "x" in failed, report
    assert "w_o" not in failed and "b_o" not in failed, report  # the output projection is right


# --------------------------------------------------------------------------------------
# residual


def test_residual_backward_matches_vjp_and_sums_the_fan_out():
    block = bp.serial(bp.layer_norm(), bp.dense(6), bp.gelu(), bp.dense(3))
    assert_layer_matches_vjp(bp.residual(block), (3,), batch=4, seed=0, jit=True)
    assert_layer_matches_vjp(bp.residual(bp.multi_head_attention(2, causal=True)), (5, 4),
                             batch=2, seed=1)
    # Without the identity path's dy the backward is the block's alone, and wrong.
    layer = bp.residual(bp.tanh())
    params, _ = layer.init(None, (3,))
    x = jnp.asarray([[0.5, -1.0, 2.0]])
    _, cache = layer.forward(params, x)
    np.testing.assert_allclose(layer.backward(params, cache, jnp.ones((1, 3)))[1],
                               1.0 + (1.0 - jnp.tanh(x) ** 2), rtol=1e-12)


def test_a_slip_inside_a_residual_block_is_located_there():
    slipped = bp.tanh()._replace(backward=lambda p, y, dy: ((), dy))  # f' forgotten
    net = bp.serial(bp.dense(3), bp.residual(bp.serial(bp.dense(3), slipped)), bp.dense(2))
    params, _ = net.init(jax.random.key(0), (3,))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 3)))
    report = bp.check_gradients(net, bp.mse(), params, x, jnp.zeros((4, 2)))
    assert not report.ok
    assert report.location.startswith("layer 1 (residual(serial(dense(3), tanh))) › layer 0 "
                                      "(serial(dense(3), tanh)) › layer 1 (tanh): dx wrong"), report


def test_attention_and_residual_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"multi_head_attention: num_heads=0 must be a positive "
                                         r"int"):
        bp.multi_head_attention(0)
    with pytest.raises(ValueError, match=r"input_shape=\(5, 6\) must be a model width divisible "
                                         r"by num_heads=4"):
        bp.multi_head_attention(4).init(jax.random.key(0), (5, 6))
    with pytest.raises(ValueError, match=r"input_shape=\(6,\) must be \(time, d_in\)"):
        bp.multi_head_attention(2).init(jax.random.key(0), (6,))
    with pytest.raises(ValueError, match=r"residual\(dense\(2\)\): the block maps input_shape="
                                         r"\(3,\) to \(2,\).*Fix: end the block"):
        bp.residual(bp.dense(2)).init(jax.random.key(0), (3,))
    with pytest.raises(TypeError, match=r"residual: block must be a jaxbp Layer"):
        bp.residual(bp.relu)
    layer = bp.residual(bp.dense(3))
    params, _ = layer.init(jax.random.key(0), (3,))
    with pytest.raises(ValueError, match=r"params must be a 1-tuple \(block_params,\)"):
        layer.forward(params[0], jnp.ones((2, 3)))


@pytest.mark.parametrize("module", ["attention", "combinators"])
def test_docstring_examples(module):
    import doctest
    import importlib
    result = doctest.testmod(importlib.import_module(f"jaxbp.layers.{module}"))
    assert result.attempted > 0 and result.failed == 0


def test_derivation_page_links_and_cited_tests_exist():
    import pathlib
    import re
    root = pathlib.Path(__file__).resolve().parents[1]
    page = root / "docs" / "derivations-attention.md"
    text = page.read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        assert (page.parent / target).exists(), f"broken link {target}"
    for name in set(re.findall(r"::(test_\w+)", text)):
        assert f"def {name}(" in pathlib.Path(__file__).read_text(), f"cites missing {name}"


def test_a_residual_network_is_checked_at_its_own_prediction():
    """The loss is checked at x + block(x), not at the block's output; a slipped block inside a
    top-level residual is located, with dropout's mask the same in every witness."""
    slipped = bp.tanh()._replace(backward=lambda p, y, dy: ((), dy))
    net = bp.residual(bp.serial(bp.dense(3), bp.dropout(0.3), slipped))
    params, _ = net.init(jax.random.key(0), (3,))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 3)))
    report = bp.check_gradients(net, bp.mse(), params, x, jnp.zeros((4, 3)),
                                key=jax.random.key(1))
    assert not report.ok
    assert report.location.endswith("layer 2 (tanh): dx wrong"), report


def test_fit_names_a_bad_min_delta():
    net = bp.serial(bp.dense(1))
    params, _ = net.init(jax.random.key(0), (2,))
    with pytest.raises(ValueError, match=r"fit: min_delta=nan must be a non-negative number"):
        bp.fit(net, bp.mse(), bp.optim.sgd(0.1), params, np.ones((4, 2)), np.zeros((4, 1)),
               key=0, epochs=1, patience=2, min_delta=float("nan"))
