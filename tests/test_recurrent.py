"""rnn, lstm, last_step, embedding: BPTT vs jax.vjp, forward vs loop references, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxbp as bp
from support import assert_layer_matches_vjp, rel_err


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


@settings(max_examples=3)
@given(kind=st.sampled_from(["rnn", "lstm"]), batch=st.integers(1, 3), time=st.integers(1, 6),
       d_in=st.integers(1, 3), d_h=st.integers(1, 4), seed=st.integers(0, 999))
def test_recurrent_matches_vjp_over_random_shapes(kind, batch, time, d_in, d_h, seed):
    layer = getattr(bp, kind)(d_h)
    assert_layer_matches_vjp(layer, (time, d_in), batch=batch, seed=seed, jit=True)


def _random_params(params, seed):
    """Non-zero biases (init starts them at 0 or 1) so their gradient paths are exercised."""
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda a: a + 0.3 * rng.standard_normal(a.shape), params)


def test_rnn_forward_matches_loop_reference():
    layer = bp.rnn(4)
    params, shape = layer.init(jax.random.key(0), (5, 3))
    params = _random_params(params, 1)
    w_xh, w_hh, b_h = map(np.asarray, params)
    x = np.random.default_rng(2).standard_normal((2, 5, 3))
    h, want = np.zeros((2, 4)), []
    for t in range(5):
        h = np.tanh(x[:, t] @ w_xh + h @ w_hh + b_h)
        want.append(h)
    y, _ = layer.forward(params, jnp.asarray(x))
    assert shape == (5, 4) and rel_err(y, np.stack(want, axis=1)) < 1e-12


def test_lstm_forward_matches_documented_gate_layout():
    """Columns are [input, forget, cell candidate, output], d_h each; forget bias starts at 1."""
    d_h = 3
    layer = bp.lstm(d_h)
    params, _ = layer.init(jax.random.key(0), (4, 2))
    assert np.array_equal(params.b, np.r_[np.zeros(d_h), np.ones(d_h), np.zeros(2 * d_h)])
    params = _random_params(params, 1)
    w_x, w_h, b = map(np.asarray, params)
    x = np.random.default_rng(2).standard_normal((2, 4, 2))
    h, c, want = np.zeros((2, d_h)), np.zeros((2, d_h)), []
    for t in range(4):
        a = x[:, t] @ w_x + h @ w_h + b
        i, f = _sigmoid(a[:, :d_h]), _sigmoid(a[:, d_h:2 * d_h])
        g, o = np.tanh(a[:, 2 * d_h:3 * d_h]), _sigmoid(a[:, 3 * d_h:])
        c = f * c + i * g
        h = o * np.tanh(c)
        want.append(h)
    y, _ = layer.forward(params, jnp.asarray(x))
    assert rel_err(y, np.stack(want, axis=1)) < 1e-12


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_bptt_with_nonzero_biases_matches_vjp(kind):
    layer = getattr(bp, kind)(3)
    params, _ = layer.init(jax.random.key(0), (6, 2))
    params = _random_params(params, 3)
    rng = np.random.default_rng(4)
    x, dy = jnp.asarray(rng.standard_normal((2, 6, 2))), jnp.asarray(rng.standard_normal((2, 6, 3)))

    def manual(p, x, dy):
        return layer.backward(p, layer.forward(p, x)[1], dy)

    def oracle(p, x, dy):
        return jax.vjp(lambda p, x: layer.forward(p, x)[0], p, x)[1](dy)

    got, want = jax.jit(manual)(params, x, dy), jax.jit(oracle)(params, x, dy)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        assert rel_err(a, b) < 1e-10


def test_last_step_keeps_only_the_last_step():
    layer = bp.last_step()
    _, shape = layer.init(None, (4, 3))
    x = jnp.arange(24.0).reshape(2, 4, 3)
    y, cache = layer.forward((), x)
    assert shape == (3,) and np.array_equal(y, x[:, -1])
    _, dx = layer.backward((), cache, jnp.ones((2, 3)))
    assert np.array_equal(dx[:, -1], np.ones((2, 3))) and not np.any(dx[:, :-1])


def test_embedding_accumulates_repeated_tokens():
    layer = bp.embedding(5, 2)
    params, shape = layer.init(jax.random.key(0), (3,))
    tokens = jnp.asarray([[1, 1, 4], [1, 0, 4]])
    y, cache = layer.forward(params, tokens)
    assert shape == (3, 2) and np.array_equal(y, params.table[tokens])
    dy = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 2)))
    dparams, dx = layer.backward(params, cache, dy)
    want = np.zeros((5, 2))
    np.add.at(want, np.asarray(tokens), np.asarray(dy))
    assert rel_err(dparams.table, want) < 1e-14
    assert dx.shape == tokens.shape and dx.dtype == jax.dtypes.float0
    (d_table,) = jax.vjp(lambda t: layer.forward(bp.EmbeddingParams(t), tokens)[0],
                         params.table)[1](dy)
    assert rel_err(dparams.table, d_table) < 1e-14


def test_lstm_float32_path():
    assert_layer_matches_vjp(bp.lstm(4), (5, 3), batch=2, seed=1, rtol=1e-5, dtype=jnp.float32,
                             jit=True)


# --------------------------------------------------------------------------------------
# Errors

def test_errors():
    with pytest.raises(ValueError, match=r"rnn: d_hidden=0 must be a positive int"):
        bp.rnn(0)
    with pytest.raises(ValueError, match=r"input_shape=\(5,\) must be \(time, d_in\)"):
        bp.lstm(3).init(jax.random.key(0), (5,))
    params, _ = bp.rnn(3).init(jax.random.key(0), (5, 2))
    with pytest.raises(ValueError, match=r"shape \(4, 5\).*\(batch, time, 2\)"):
        bp.rnn(3).forward(params, jnp.ones((4, 5)))
    with pytest.raises(ValueError, match=r"last_step: input x has shape \(4, 5\)"):
        bp.last_step().forward((), jnp.ones((4, 5)))
    emb = bp.embedding(5, 2)
    table, _ = emb.init(jax.random.key(0), (3,))
    with pytest.raises(TypeError, match=r"tokens must be an integer array.*astype\(jnp.int32\)"):
        emb.forward(table, jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"tokens range over \[0, 5\], outside \[0, 5\)"):
        emb.forward(table, jnp.asarray([[0, 5, 1]]))
    with pytest.raises(ValueError, match=r"vocab_size=-1 must be a positive int"):
        bp.embedding(-1, 2)
