"""The transformer's pieces: position_embedding and token_cross_entropy (hand-derived backward
vs jax.vjp / jax.grad, float64 and float32), a whole transformer, token accuracy, the sort and
text data, generation, and the ``jaxbp train sort|text`` command in a tiny configuration.

The accuracy claim (``jaxbp train sort`` >= 99 % test tokens) is measured by hand, not here:
docs/transformer.md reports it (its Python block runs in tests/test_docs.py). Models here are
tiny and few shapes are drawn, so compiles stay cheap.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp as bp
from jaxbp import data, models
from jaxbp.cli import main
from jaxbp.train.metrics import check_values, token_accuracy
from support import assert_layer_matches_vjp, assert_trees_close

TINY = dict(d_model=4, num_heads=2, num_blocks=1)


# --------------------------------------------------------------------------------------
# position_embedding


@pytest.mark.parametrize("batch, shape, max_len", [(1, (3, 2), 3), (2, (5, 3), 7)])
def test_position_embedding_backward_matches_vjp(batch, shape, max_len):
    """Odd lengths, batch 1, a table longer than the sequence (its unread rows get 0)."""
    assert_layer_matches_vjp(bp.position_embedding(max_len), shape, batch=batch, seed=batch,
                             jit=True)


def test_position_embedding_float32_and_forward():
    layer = bp.position_embedding(6)
    assert_layer_matches_vjp(layer, (5, 3), batch=2, seed=4, rtol=1e-6, dtype=jnp.float32)
    params, _ = layer.init(jax.random.key(0), (4, 3))
    x = jnp.ones((2, 4, 3))
    np.testing.assert_array_equal(layer.forward(params, x)[0], x + params.table[None, :4])
    short = layer.forward(params, x[:, :2])[0]  # a prefix uses the table's first rows
    np.testing.assert_array_equal(short, x[:, :2] + params.table[None, :2])
    dtable, _dx = layer.backward(params, layer.forward(params, x)[1], x)
    np.testing.assert_array_equal(dtable.table[4:], 0.0)
    np.testing.assert_array_equal(dtable.table[:4], 2.0)


@pytest.mark.parametrize("call, match", [
    (lambda: bp.position_embedding(0), r"position_embedding: max_len=0 must be"),
    (lambda: bp.position_embedding(3).init(jax.random.key(0), (5, 2)),
     r"has 5 positions, but the table has max_len=3 rows. Fix: position_embedding\(5\)"),
    (lambda: bp.position_embedding(3).init(jax.random.key(0), (5,)),
     r"input_shape=\(5,\) must be \(time, d_in\)"),
])
def test_position_embedding_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_position_embedding_rejects_longer_or_integer_input():
    layer = bp.position_embedding(3)
    params, _ = layer.init(jax.random.key(0), (3, 2))
    with pytest.raises(ValueError, match=r"4 positions, but the table has max_len=3"):
        layer.forward(params, jnp.ones((1, 4, 2)))
    with pytest.raises(TypeError, match=r"dtype int"):
        layer.forward(params, jnp.ones((1, 3, 2), jnp.int32))


def test_seeded_slips_are_caught_by_the_checker():
    """Two slips these derivations invite: the position table's gradient without the sum over
    the batch, and the per-position loss's gradient without its 1/n_b (the positions counted)."""
    good = bp.position_embedding(4)
    slipped = good._replace(backward=lambda p, c, dy: (
        bp.PositionEmbeddingParams(jnp.zeros_like(p.table).at[:dy.shape[1]].set(dy[0])), dy))
    report = bp.check_layer(slipped, (3, 2), draws=1)
    assert not report.ok and "table" in str(report), report
    ce = bp.token_cross_entropy()
    no_count = ce._replace(grad=lambda z, y: (jax.nn.softmax(z) * (y[..., None] >= 0)
                                              - jax.nn.one_hot(y, z.shape[-1])) / z.shape[0])
    report = bp.check_loss(no_count, (3, 4), draws=1, target_fn=bp.cases.token_targets)
    assert not report.ok, report


# --------------------------------------------------------------------------------------
# token_cross_entropy and token accuracy


def _logits_and_targets(batch, time, vocab, seed, one_hot=False, dtype=jnp.float64):
    rng = np.random.default_rng(seed)
    z = jnp.asarray(3 * rng.standard_normal((batch, time, vocab)), dtype)
    y = np.where(rng.uniform(size=(batch, time)) < 0.3, -1,
                 rng.integers(0, vocab, (batch, time))).astype(np.int32)
    if one_hot:
        return z, jnp.asarray(np.where(y[..., None] >= 0, np.eye(vocab)[np.maximum(y, 0)], 0.0),
                              dtype)
    return z, jnp.asarray(y)


TOKEN_CE = bp.token_cross_entropy()
# manual and autodiff gradients in one compiled call (one compile per shape and dtype)
_ce_grads = jax.jit(lambda z, y: (TOKEN_CE.grad(z, y), jax.grad(TOKEN_CE.value)(z, y)))


@pytest.mark.parametrize("batch, time, vocab, one_hot", [
    (1, 5, 3, True), (1, 5, 3, False), (3, 3, 5, False)])
def test_token_cross_entropy_grad_matches_jax_grad(batch, time, vocab, one_hot):
    for seed in range(2):
        z, y = _logits_and_targets(batch, time, vocab, seed, one_hot)
        assert_trees_close(*_ce_grads(z, y), 1e-10, "token CE")


def test_token_cross_entropy_float32_and_its_definition():
    loss = TOKEN_CE
    z, y = _logits_and_targets(2, 5, 4, 0, dtype=jnp.float32)
    g, want = _ce_grads(z, y)
    assert g.dtype == jnp.float32
    assert_trees_close(g, want, 1e-6, "token CE float32")
    # Mean over each sequence's counted positions, then over the batch (float64 reference).
    z64, y64 = np.asarray(z, np.float64), np.asarray(y)
    logp = z64 - np.log(np.exp(z64).sum(-1, keepdims=True))
    per_seq = [np.mean([-logp[b, t, y64[b, t]] for t in range(5) if y64[b, t] >= 0])
               for b in range(2)]
    np.testing.assert_allclose(float(loss.value(z, y)), np.mean(per_seq), rtol=1e-5)
    # Without ignored positions it is softmax_cross_entropy over all positions.
    y_all = jnp.maximum(y, 0)
    flat = bp.softmax_cross_entropy().value(z.reshape(10, 4), y_all.reshape(10))
    np.testing.assert_allclose(loss.value(z, y_all), flat, rtol=1e-6)


def test_ignored_positions_add_nothing_and_weighted_is_the_batch_mean():
    loss = TOKEN_CE
    z, y = _logits_and_targets(3, 3, 5, 1)
    none = jnp.full_like(y, -1)
    assert float(loss.value(z, none)) == 0.0 and not np.any(loss.grad(z, none))
    g = loss.grad(z, y)
    np.testing.assert_array_equal(g[np.asarray(y) < 0], 0.0)
    w = bp.weighted(loss)
    pair = (y, jnp.full((3,), 1 / 3))
    np.testing.assert_allclose(w.value(z, pair), loss.value(z, y), rtol=1e-12)
    np.testing.assert_allclose(w.grad(z, pair), g, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("z_shape, y, error, match", [
    ((2, 4), np.zeros(2, np.int32), ValueError, r"must have shape \(batch, time, vocab\)"),
    ((2, 3, 4), np.zeros((2, 4), np.int32), ValueError, r"expected integer targets of shape"),
    ((2, 3, 4), np.zeros((2, 3)), TypeError, r"must be integer token ids in \[0, 4\) or -1"),
])
def test_token_cross_entropy_errors(z_shape, y, error, match):
    with pytest.raises(error, match=match):
        bp.token_cross_entropy().value(jnp.zeros(z_shape), jnp.asarray(y))


def test_token_accuracy_counts_positions_with_targets():
    z = jnp.asarray(np.eye(3)[[[0, 1, 2, 0], [2, 2, 2, 2]]])       # predicts 0 1 2 0 / 2 2 2 2
    y = jnp.asarray([[0, 1, 0, -1], [-1, -1, -1, -1]])
    np.testing.assert_allclose(token_accuracy(z, y), [2 / 3, 0.0])
    one_hot = jnp.where(y[..., None] >= 0, jax.nn.one_hot(y, 3), 0.0)
    np.testing.assert_allclose(token_accuracy(z, one_hot), [2 / 3, 0.0])
    assert bp.train.accuracy_for(bp.token_cross_entropy()) is token_accuracy


# --------------------------------------------------------------------------------------
# The whole transformer


@pytest.fixture(scope="module")
def tiny():
    """A one-block transformer on 5 tokens, sequences of up to 5 positions, and its params."""
    net, loss = models.transformer(5, 5, **TINY)
    params, shape = net.init(jax.random.key(0), (5,))
    assert shape == (5, 5)
    return net, loss, params


def test_whole_transformer_backward_matches_vjp(tiny):
    """Batch 1, an odd length shorter than max_len (the position table's unread rows get 0)."""
    net, _, params = tiny
    x = jnp.asarray([[4, 0, 2]])
    dy = jnp.asarray(np.random.default_rng(0).standard_normal((1, 3, 5)))

    def both(p, x, dy):
        _y, cache = net.forward(p, x)
        return net.backward(p, cache, dy)[0], jax.vjp(lambda p: net.forward(p, x)[0], p)[1](dy)[0]

    assert_trees_close(*jax.jit(both)(params, x, dy), 1e-10, "transformer float64")


def test_transformer_is_causal_and_its_builder_checks_sizes(tiny):
    net, _, params = tiny
    x = jnp.asarray([[1, 2, 3, 4, 0]])
    later = x.at[:, 3:].set(2)
    y, y_later = net.forward(params, x)[0], net.forward(params, later)[0]
    np.testing.assert_allclose(y[:, :3], y_later[:, :3], rtol=1e-12)
    assert not np.allclose(y[:, 3:], y_later[:, 3:])
    with pytest.raises(ValueError, match=r"d_model=6 must be divisible by num_heads=4"):
        models.transformer(5, 5, d_model=6, num_heads=4)


def test_generate_feeds_each_token_back_and_checks_its_arguments(tiny):
    net, _, params = tiny
    prompt = jnp.asarray([[1, 2], [3, 3]])
    out = models.generate(net, params, prompt, 6, context=5, temperature=0.0)
    assert out.shape == (2, 8) and np.array_equal(out[:, :2], prompt)
    forward = jax.jit(lambda p, w: net.forward(p, w)[0])
    for n in range(2, 8):  # greedy: token n is the argmax after the (at most 5) tokens before it
        start = max(0, n - 5)  # causal: the window's later tokens do not change position n - 1
        logits = forward(params, out[:, start:start + 5])[:, n - 1 - start]
        np.testing.assert_array_equal(jnp.argmax(logits, -1), out[:, n])
    with pytest.raises(TypeError, match=r"key is required to sample"):
        models.generate(net, params, prompt, 3, context=5)
    with pytest.raises(TypeError, match=r"prompt=.* must be int token ids of shape"):
        models.generate(net, params, jnp.ones((2, 2)), 3, context=5, temperature=0.0)


# --------------------------------------------------------------------------------------
# Data


def test_sort_digits_layout():
    x, y = data.sort_digits(50, length=5, seed=3)
    assert x.shape == y.shape == (50, 10) and x.dtype == y.dtype == np.int32
    np.testing.assert_array_equal(x[:, 5], data.SORT_SEPARATOR)
    np.testing.assert_array_equal(y[:, :5], -1)
    np.testing.assert_array_equal(y[:, 5:], np.sort(x[:, :5], axis=1))   # the sorted digits
    np.testing.assert_array_equal(x[:, 6:], y[:, 5:9])                    # shifted by one
    assert len(np.unique(x[:, :5], axis=0)) == 50
    np.testing.assert_array_equal(x, data.sort_digits(50, length=5, seed=3)[0])
    assert len(data.sort_digits(200, length=1)[0]) == 10  # duplicates dropped


def test_load_sort_splits_distinct_strings():
    ds = data.load("sort", n=300, seed=1)
    assert ds.num_classes == data.SORT_VOCAB == 11 and ds.train.x.shape[1] == 16
    seen = {tuple(r) for r in ds.train.x}
    assert not any(tuple(r) in seen for r in ds.test.x)


def test_text_windows_encode_decode_and_errors(tmp_path):
    text = "hello world, " * 20
    ds = data.text_windows(text, context=7, seed=0)
    chars = data.char_vocabulary(text)
    assert ds.num_classes == len(chars) == 9
    n = sum(len(s.x) for s in (ds.train, ds.val, ds.test))
    assert n == len(text) // 8 and ds.train.x.shape[1:] == (7,)
    np.testing.assert_array_equal(ds.train.x[:, 1:], ds.train.y[:, :-1])  # next characters
    assert data.decode(data.encode(text, chars), chars) == text
    with pytest.raises(ValueError, match=r"the text has 12 characters, but .* at least 24"):
        data.text_windows("abcdefghijkl", context=7)
    with pytest.raises(ValueError, match=r"characters 'z' are not in the vocabulary"):
        data.encode("az", "a")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match=r"is empty"):
        data.read_text(tmp_path / "empty.txt")
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        data.read_text(tmp_path / "missing.txt")
    with pytest.raises(IsADirectoryError, match=r"is a directory"):
        data.read_text(tmp_path)


def test_token_targets_out_of_range_are_caught_on_the_host(tiny):
    net, _, params = tiny
    x = np.zeros((2, 5), np.int32)
    check_values("fit", net, params, x, np.full((2, 5), -1, np.int32))   # -1: no target
    with pytest.raises(ValueError, match=r"token targets in \[7, 7\], but the network has 5"):
        check_values("fit", net, params, x, np.full((2, 5), 7, np.int32))


# --------------------------------------------------------------------------------------
# The command, tiny: wiring and messages only (the full runs are measured in the docs)

SMALL = ["--epochs", "1", "--d-model", "8", "--heads", "2", "--blocks", "1", "--no-progress"]


def test_train_sort_prints_generation_and_token_accuracy(capsys):
    assert main(["train", "sort", *SMALL, "--batch-size", "512"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"gradient check: .* -> OK", out), out
    assert "position_embedding(16)" in out and "loss token_cross_entropy" in out, out
    assert re.search(r"^exactly sorted: \d+/1800$", out, re.M), out
    assert re.search(r"^  (\d ){8}-> (\d ){7}\d  (ok|WRONG)$", out, re.M), out
    assert out.strip().splitlines()[-1].startswith("test_accuracy: ")
    assert 0.0 <= float(out.strip().splitlines()[-1].split()[1]) <= 1.0


def test_train_text_prints_a_sample(tmp_path, capsys):
    path = tmp_path / "t.txt"
    path.write_text("the cat sat on the mat. " * 30)
    argv = ["train", "text", "--file", str(path), "--context", "8", *SMALL,
            "--sample-length", "12"]  # sampled at the default temperature
    assert main(argv) == 0
    lines = capsys.readouterr().out.rstrip("\n").splitlines()  # the sample may end in a space
    assert lines[-2] == "sample:" and len(lines[-1]) == 8 + 12, lines[-3:]
    assert any(line.startswith("test_accuracy: ") for line in lines)


@pytest.mark.parametrize("argv, match", [
    (["text"], r"text needs the file to learn from. Fix: jaxbp train text --file"),
    (["text", "--file", "{missing}"], r"--file: text: '.*missing.txt' does not exist"),
    (["text", "--file", "{empty}"], r"text: '.*empty.txt' is empty"),
    (["text", "--file", "{short}"], r"the text has 4 characters, but .* at least 195"),
    (["text", "--file", "{dir}"], r"is a directory, not a text file"),
    (["sort", "--file", "x.txt"], r"--file applies to the text task"),
    (["sort", "--model", "mlp"], r"sort is a sequence task, trained with --model transformer"),
    (["digits", "--model", "transformer"], r"--model transformer works on the sequence tasks"),
    (["sort", "--hidden", "8"], r"--hidden does not apply to the transformer"),
])
def test_sequence_task_errors_are_one_line(argv, match, tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "short.txt").write_text("abc\n")
    names = {"missing": tmp_path / "missing.txt", "empty": tmp_path / "empty.txt",
             "short": tmp_path / "short.txt", "dir": tmp_path}
    argv = [a.format(**names) for a in argv]
    assert main(["train", *argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("jaxbp train: error: "), err
    assert re.search(match, err), err


def test_transformer_benchmark_is_the_issues_configuration_and_reports_its_targets():
    """benchmarks/transformer.py (``python -m benchmarks.run --quick --configs transformer``
    checks backprop and PyTorch against autodiff before timing; measured by hand, not here)."""
    import pathlib
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from benchmarks import transformer

    bench = transformer.Bench()
    assert (bench.d_model, bench.heads, bench.blocks, bench.time, bench.batch) == (64, 4, 2, 32, 32)
    xs, ys = transformer.make_data(bench, steps=2)
    assert xs.shape == ys.shape == (2, 32, 32) and np.array_equal(xs[:, :, 1:], ys[:, :, :-1])
    fake = {"times": {transformer.BACKPROP: [1.0] * 3, transformer.AUTODIFF: [1.1] * 3},
            "compile": {}, "description": bench.description, "steps": 2, "load_after": "0"}
    text = transformer.markdown(fake)
    assert "| backprop step ≤ 1.0 × autodiff (scanned epoch, SGD) | 0.909× | ≤ 1.0× | met |" in text
    assert "torch not installed" in text
    fake["times"][transformer.TORCH] = [1.4] * 3
    assert "1.40× | ≥ 1.5× | **missed** |" in transformer.markdown(fake)
