"""Property-based fuzzing of the public API: whatever the input, only jaxbp's documented
exceptions escape.

Random shapes, ranks, dtypes (integer, bool, bfloat16, float) and values (nan, inf, huge) go
into every layer (forward and backward, with their own params or another network's), the
losses, ``backprop`` / ``autodiff``, ``make_train_step`` and ``check_layer``; random bytes and
truncated or bit-flipped real files go into ``checkpoint.load``. Each call either succeeds or
raises a ``ValueError`` / ``TypeError`` (or a documented subclass such as
``checkpoint.CheckpointError``) *raised by jaxbp itself* in its message style — never an error
from inside JAX, XLA or NumPy (an ``IndexError``, an ``XlaRuntimeError``, a ``TypeError`` from
``dot_general``). Examples are few and shapes come from small pools, so compilations stay few;
fuzz longer (and at random) with ``JAXBP_FUZZ_SCALE=20 pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import os
import tempfile
import traceback
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxbp as bp
from jaxbp import checkpoint

JAXBP = os.sep + "jaxbp" + os.sep
SCALE = int(os.environ.get("JAXBP_FUZZ_SCALE", "1"))


def examples(n: int):
    """``n`` fixed examples in the suite; ``JAXBP_FUZZ_SCALE=20`` fuzzes 20x longer, at random."""
    return settings(max_examples=n * SCALE, derandomize=SCALE == 1)


@pytest.fixture(autouse=True)
def _full_tracebacks():
    """JAX hides its own frames from tracebacks; the origin of an error needs them."""
    old = jax.config.jax_traceback_filtering
    jax.config.update("jax_traceback_filtering", "off")
    yield
    jax.config.update("jax_traceback_filtering", old)


def _origin(e: BaseException) -> BaseException:
    """The error a combinator re-raised with its context (``serial layer 0 (...): msg``)."""
    ctx = e.__context__
    while (ctx is not None and e.__suppress_context__ and type(ctx) is type(e)
           and str(e).endswith(str(ctx).split(": ", 1)[-1])):
        e, ctx = ctx, ctx.__context__
    return e


def documented(call, *, allowed=(ValueError, TypeError)):
    """Runs ``call()``; returns its result, or ``None`` if it raised one of jaxbp's documented
    errors. Anything else — another type, or an allowed type raised from inside JAX / NumPy —
    fails the test with the traceback."""
    try:
        return call()
    except allowed as e:
        origin = _origin(e)
        frames = traceback.extract_tb(origin.__traceback__)
        where = frames[-1].filename if frames else ""
        styled = "Fix" in str(e) or isinstance(e, (checkpoint.CheckpointError, OSError))
        if JAXBP not in where or not styled:
            raise AssertionError(
                f"{type(e).__name__} not raised by jaxbp in its style (from {where}): {e}") from e
        return None


# ---- inputs: few shapes, so few compilations -------------------------------------------

DTYPES = [jnp.float32, jnp.float64, jnp.bfloat16, jnp.int32, jnp.bool_]
VALUES = [0.0, 1.0, -2.5, np.nan, np.inf, -np.inf, 1e30]


@st.composite
def arrays(draw, shapes):
    """An array of one of ``shapes``, a random dtype, filled with one special or plain value
    (or standard normal draws)."""
    shape = draw(st.sampled_from(shapes))
    dtype = draw(st.sampled_from(DTYPES))
    value = draw(st.sampled_from([*VALUES, "normal"]))
    if value == "normal":
        a = np.random.default_rng(0).standard_normal(shape)
    else:
        a = np.full(shape, value)
    if not jnp.issubdtype(dtype, jnp.inexact):
        a = np.nan_to_num(a, posinf=1, neginf=-1).clip(-3, 3)
    with np.errstate(invalid="ignore", over="ignore"):
        return jnp.asarray(a.astype(np.float64)).astype(dtype)


# Each layer, an input shape it was built for, and one of another network's (or that network).
LAYERS = {
    "dense": (bp.dense(3), (4,), (5,)),
    "conv2d": (bp.conv2d(2, 3), (4, 4, 2), (4, 4, 3)),
    "max_pool": (bp.max_pool(2), (4, 4, 2), (2, 2, 2)),
    "avg_pool": (bp.avg_pool(2, padding="SAME"), (4, 4, 2), (3, 3, 2)),
    "flatten": (bp.flatten(), (2, 3), (3, 2)),
    "rnn": (bp.rnn(3), (4, 2), (4, 3)),
    "lstm": (bp.lstm(2), (4, 2), (4, 3)),
    "layer_norm": (bp.layer_norm(), (3,), (4,)),
    "embedding": (bp.embedding(5, 3), (4,), (2,)),
    "attention": (bp.multi_head_attention(2, causal=True), (3, 4), (3, 2)),
    "residual": (bp.residual(bp.serial(bp.dense(3), bp.tanh())), (3,),
                 (bp.residual(bp.serial(bp.dense(4), bp.tanh())), (4,))),
    "dropout": (bp.dropout(0.5), (3,), (4,)),
    "softmax": (bp.softmax(), (3,), (4,)),
    "relu": (bp.relu(), (3,), (4,)),
    "last_step": (bp.last_step(), (4, 2), (3, 2)),
    "serial": (bp.serial(bp.dense(4), bp.gelu(), bp.dense(2)), (4,), (3,)),
}
PARAMS = {k: layer.init(jax.random.key(0), good)[0] for k, (layer, good, _) in LAYERS.items()}
OTHER = {k: (other[0].init(jax.random.key(0), other[1]) if isinstance(other[0], bp.Layer)
             else layer.init(jax.random.key(0), other))[0]
         for k, (layer, _, other) in LAYERS.items()}


def _shapes(good):
    """The shapes ``x`` is drawn from: right, without the batch, one axis more or fewer, empty,
    and a wrong last size."""
    return [(2, *good), good, (2, *good, 2), (2, *good[:-1]), (0, *good), (2, *good[:-1], 1)]


@examples(40)
@given(st.sampled_from(sorted(LAYERS)), st.data())
def test_layers_forward_and_backward(name, data):
    layer, good, _ = LAYERS[name]
    params = data.draw(st.sampled_from([PARAMS[name], OTHER[name]]), "params")
    x = data.draw(arrays(_shapes(good)), "x")
    if name == "embedding" and data.draw(st.booleans(), "integer tokens"):
        x = x.astype(jnp.int32)
    key = data.draw(st.sampled_from([None, jax.random.key(1)]), "key")
    out = documented(lambda: layer.forward(params, x, key=key))
    if out is None:
        return
    y, cache = out
    dy_shape = data.draw(st.sampled_from([y.shape, y.shape[:-1], (*y.shape, 1), (1,)]), "dy")
    dy = jnp.ones(dy_shape, data.draw(st.sampled_from([jnp.float32, jnp.float64]), "dy dtype"))
    documented(lambda: layer.backward(params, cache, dy))


@examples(20)
@given(st.sampled_from(sorted(LAYERS)),
       st.one_of(st.sampled_from([3, 0, -1, (), (0,), (-2, 3), (4, 4, 2, 1), "4", None, (2.5,),
                                  [4], (3, 4), (4, 4, 2)])))
def test_layers_init_on_any_input_shape(name, input_shape):
    layer = LAYERS[name][0]
    documented(lambda: layer.init(jax.random.key(0), input_shape))


LOSSES = {"mse": bp.mse(), "bce": bp.binary_cross_entropy(),
          "sigmoid_bce": bp.sigmoid_binary_cross_entropy(), "ce": bp.softmax_cross_entropy(),
          "weighted_ce": bp.weighted(bp.softmax_cross_entropy())}
LOSS_SHAPES = [(4, 3), (4,), (4, 1), (3, 3), (), (0, 3), (4, 3, 1)]


@examples(30)
@given(st.sampled_from(sorted(LOSSES)), arrays(LOSS_SHAPES), arrays(LOSS_SHAPES))
def test_losses(name, y_pred, y_true):
    loss = LOSSES[name]
    documented(lambda: loss.value(y_pred, y_true))
    documented(lambda: loss.grad(y_pred, y_true))


NET = LAYERS["serial"][0]
X_SHAPES = [(6, 4), (6, 3), (4,), (0, 4), (6, 4, 1)]
Y_SHAPES = [(6,), (6, 2), (5,), (6, 1), ()]


@examples(16)
@given(st.sampled_from([bp.backprop, bp.autodiff]), st.sampled_from(sorted(LOSSES)),
       st.sampled_from([PARAMS["serial"], OTHER["serial"]]), arrays(X_SHAPES), arrays(Y_SHAPES))
def test_gradients(grad, loss, params, x, y):
    documented(lambda: grad(NET, LOSSES[loss])(params, x, y))


STEP = bp.make_train_step(NET, bp.softmax_cross_entropy(), bp.optim.adam(1e-2))
OPT_STATE = bp.optim.adam(1e-2).init(PARAMS["serial"])


@examples(10)
@given(arrays([(6, 4), (6, 3), (0, 4)]), arrays([(6,), (6, 2), (5,)]),
       st.sampled_from([PARAMS["serial"], OTHER["serial"]]))
def test_make_train_step(x, y, params):
    documented(lambda: STEP(params, OPT_STATE, x, y))


@examples(6)
@given(st.sampled_from(["dense", "layer_norm", "relu", "flatten", "serial"]),
       st.sampled_from([(4,), (3,), (0,), 4, None, (2, 3)]),
       st.sampled_from([(1,), (0,), (), (2, -1)]), st.sampled_from([1e-6, -1.0, float("nan")]))
def test_check_layer(name, input_shape, batch_sizes, rtol):
    layer = LAYERS[name][0]
    documented(lambda: bp.check_layer(layer, input_shape, batch_sizes=batch_sizes, draws=1,
                                      rtol=rtol))


# ---- checkpoints: random bytes, truncated and bit-flipped real files --------------------

TREE = {"params": PARAMS["serial"], "step": 3, "note": np.arange(4.0)}
with tempfile.TemporaryDirectory() as _d:
    REAL = checkpoint.save(Path(_d) / "c.npz", TREE, metadata={"run": "fuzz"}).read_bytes()


def _load(blob: bytes):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.npz"
        path.write_bytes(blob)
        return documented(lambda: checkpoint.load(path, TREE),
                          allowed=(checkpoint.CheckpointError,))


def _same(a, b) -> bool:
    return all(np.array_equal(np.asarray(u), np.asarray(v)) for u, v in
               zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


@examples(15)
@given(st.one_of(st.binary(max_size=300), st.binary(max_size=40).map(lambda b: b"PK\x03\x04" + b)))
def test_checkpoint_load_random_bytes(blob):
    _load(blob)


@examples(15)
@given(st.integers(0, len(REAL) - 1))
def test_checkpoint_load_truncated(n):
    assert _load(REAL[:n]) is None  # a truncated file is never read as a valid checkpoint


@examples(30)
@given(st.integers(0, len(REAL) - 1), st.integers(0, 7))
def test_checkpoint_load_bit_flipped(i, bit):
    blob = bytearray(REAL)
    blob[i] ^= 1 << bit
    out = _load(bytes(blob))
    if out is not None:  # a flip the format does not depend on (a timestamp): the same values
        tree, metadata = out
        assert _same(tree, TREE) and metadata == {"run": "fuzz"}, (i, bit)


def test_checkpoint_load_of_a_missing_path_or_a_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        checkpoint.load(tmp_path / "missing.npz", TREE)
    documented(lambda: checkpoint.load(tmp_path, TREE), allowed=(FileNotFoundError,
                                                                  checkpoint.CheckpointError))
