"""Every bad input of the API and the command line, one row each: the error it raises (type and
message) or, for ``jaxbp``, the one line on stderr and the exit status.

The table is also the source of ``docs/errors.md``: each row's test compares the message it
produces with that row's line of the page, and ``test_errors_doc_is_current`` the rest of the
page (its text, one line per row, in order), so every row runs once. After changing a message,
regenerate with::

    python tests/test_robust_errors.py        # rewrites docs/errors.md
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, NamedTuple
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp as bp
from jaxbp import checkpoint, data, models, plot
from jaxbp.cli import main
from jaxbp.train import fit
from jaxbp.train.diverge import TrainingDiverged

DOC = Path(__file__).resolve().parent.parent / "docs" / "errors.md"


class Row(NamedTuple):
    """One bad input. ``run(dir)`` raises ``error`` (an exception type) for an API row; a CLI
    row is the ``argv`` of ``jaxbp`` (``{dir}`` stands for a scratch directory) and ``error``
    its exit status. ``match`` is searched in the message; ``setup(dir)`` prepares files."""

    what: str
    run: Callable[[Path], Any] | list[str]
    error: type | int
    match: str
    setup: Callable[[Path], None] | None = None


# One small network, its params and data for every API row: few shapes, few compilations.
NET = bp.serial(bp.dense(8), bp.tanh(), bp.dense(3))
PARAMS = NET.init(jax.random.key(0), (2,))[0]
OTHER = bp.serial(bp.dense(5), bp.tanh(), bp.dense(3)).init(jax.random.key(0), (2,))[0]
X = np.random.default_rng(0).standard_normal((12, 2))
Y = (X[:, 0] > 0).astype(np.int32)
CE, SGD = bp.softmax_cross_entropy(), bp.optim.sgd(0.1)


def _fit(x=X, y=Y, **kw):
    kw = {"key": 0, "epochs": 1, "batch_size": 4, "progress": False, **kw}
    net = kw.pop("net", NET)
    params = PARAMS if net is NET else net.init(jax.random.key(0), (2,))[0]
    return fit(net, CE, kw.pop("optimizer", SGD), params, x, y, **kw)


# A network with state (batch norm's running statistics) for the layer-state rows.
BN_NET = bp.serial(bp.dense(4), bp.batch_norm(), bp.tanh(), bp.dense(3))
BN_PARAMS = BN_NET.init(jax.random.key(0), (2,))[0]


def _bn_state(width: int):
    """A fresh batch norm's state for ``width`` features."""
    bn = bp.batch_norm()
    return bp.init_layer_state(bn, bn.init(jax.random.key(0), (width,))[0])


def _stateless_wrapper(inner):
    """A user's combinator around ``inner`` that declares no state rule."""
    return bp.Layer(inner.init, lambda p, x, key=None: inner.forward(p, x, key=key),
                    inner.backward, "my_block", (inner,))


# Small inputs for the rows of every other layer: NHWC images, (batch, time, features) sequences.
IMG, SEQ, TOK = jnp.ones((2, 6, 6, 2)), jnp.ones((2, 5, 3)), jnp.zeros((2, 5), jnp.int32)


def _params(layer, shape):
    return layer.init(jax.random.key(0), shape)[0]


def _forward(layer, shape, x, params_of=None):
    """``layer.forward`` on ``x``, with the params of ``params_of`` (another layer) if given."""
    return layer.forward(_params(params_of or layer, shape), x)


def _backward(layer, shape, x, dy_shape, key=None):
    """``layer.backward`` after a forward on ``x``, given a ``dy`` of ``dy_shape``."""
    params = _params(layer, shape)
    return layer.backward(params, layer.forward(params, x, key=key)[1], jnp.ones(dy_shape))


def _recurrent_rows(name: str, factory, field: str, width_of_5: int) -> list:
    """The three rows of a recurrent layer ``factory(4)`` on ``SEQ``: another network's params
    (``factory(5)``, whose ``field`` is ``(3, width_of_5)``), integer x, dy of the last step."""
    layer, want = factory(4), width_of_5 * 4 // 5
    return [
        Row(f"{name} given the params of another {name} (hidden 5 vs 4)",
            lambda d: _forward(layer, (5, 3), SEQ, factory(5)), ValueError,
            rf"{name}\(4\): params\.{field} has shape \(3, {width_of_5}\), but this layer "
            rf"expects \(d_in, {want}\)"),
        Row(f"integer sequences into {name}", lambda d: _forward(layer, (5, 3), SEQ.astype(int)),
            TypeError, rf"{name}\(4\): input x has dtype int\d+, but a floating-point array"),
        Row(f"dy of the wrong shape into {name}'s backward (the last step only)",
            lambda d: _backward(layer, (5, 3), SEQ, (2, 4)), ValueError,
            rf"{name}\(4\): backward got dy of shape \(2, 4\), but forward's output y has "
            rf"shape \(2, 5, 4\)"),
    ]


def _with(a, index, value):
    a = np.array(a, dtype=float if isinstance(value, float) else a.dtype)
    a[index] = value
    return a


def _bad_structure_layer():
    inner = bp.dense(3)
    return bp.Layer(inner.init, inner.forward, lambda p, c, dy: (p.w, dy @ p.w.T), "mine")


def _saved_run(directory: Path, damaged: str = "") -> None:
    """A run of NET saved in ``directory`` after 2 epochs; ``damaged``: which files to spoil."""
    _fit(epochs=2, checkpoint_dir=directory)
    for path in checkpoint.checkpoints(directory)[: {"": 0, "newest": 1, "all": 9}[damaged]]:
        path.write_bytes(path.read_bytes()[:100])  # truncated, as by a full disk


def _flag_encrypted(path: Path) -> None:
    """Sets the 'encrypted' bit of the first entry's zip flags, as one flipped bit would."""
    blob = bytearray(path.read_bytes())
    blob[blob.index(b"PK\x01\x02") + 8] |= 1
    path.write_bytes(bytes(blob))


def _cli_run(directory: Path) -> None:
    assert main(["train", "xor", "--epochs", "1", "--no-progress",
                 "--checkpoint", str(directory / "ck")]) == 0


def _truncate_all(directory: Path) -> None:
    _cli_run(directory)
    for path in checkpoint.checkpoints(directory / "ck"):
        path.write_bytes(path.read_bytes()[:100])


def _diverge(_):
    net = bp.serial(bp.dense(8), bp.relu(), bp.dense(1))
    x = np.random.default_rng(0).standard_normal((40, 3))
    params = net.init(jax.random.key(0), (3,))[0]
    fit(net, bp.mse(), bp.optim.sgd(1e3), params, x, 3 * x[:, :1], key=0, epochs=3,
        batch_size=8, progress=False)


ROWS = [
    # ---- shapes and dtypes, checked at trace time --------------------------------------
    Row("params of another network (hidden 5 vs 8) into forward",
        lambda d: NET.forward(OTHER, jnp.ones((4, 2))), ValueError,
        r"layer 0 \(dense\(8\)\): params\.w has shape \(2, 5\), but this layer expects "
        r"\(d_in, 8\)"),
    Row("integer x into a dense network", lambda d: NET.forward(PARAMS, jnp.ones((4, 2), int)),
        TypeError, r"input x has dtype int\d+, but a floating-point array is expected"),
    Row("empty batch into backprop",
        lambda d: bp.backprop(NET, CE)(PARAMS, jnp.ones((0, 2)), jnp.ones((0,), int)),
        ValueError, r"backprop: x has shape \(0, 2\), an empty batch"),
    Row("dy of the wrong shape into backward",
        lambda d: NET.backward(PARAMS, NET.forward(PARAMS, jnp.ones((4, 2)))[1],
                               jnp.ones((4, 2))),
        ValueError, r"layer 2 \(dense\(3\)\): backward got dy of shape \(4, 2\), but "
                    r"forward's output y has shape \(4, 3\)"),
    Row("x without the batch axis (wrong rank)", lambda d: NET.forward(PARAMS, jnp.ones((2,))),
        ValueError, r"input x has shape \(2,\), but the layer expects \(batch, \*\(2,\)\)"),
    Row("x with the wrong feature size", lambda d: NET.forward(PARAMS, jnp.ones((4, 5))),
        ValueError, r"layer 0 \(dense\(8\)\): input x has shape \(4, 5\)"),
    Row("labels whose batch size differs from x (backprop)",
        lambda d: bp.autodiff(NET, CE)(PARAMS, jnp.ones((4, 2)), jnp.zeros((3,), int)),
        ValueError, r"autodiff: y has 3 examples \(shape \(3,\)\) but x has 4"),
    Row("labels whose batch size differs from x (fit)", lambda d: _fit(y=Y[:7]), ValueError,
        r"fit: x has shape \(12, 2\) and y has shape \(7,\)"),
    Row("float labels where integer classes are expected",
        lambda d: bp.backprop(NET, CE)(PARAMS, jnp.ones((4, 2)), jnp.zeros((4,))),
        TypeError, r"labels of shape \(batch,\) must be integer class indices in \[0, 3\)"),
    Row("targets of another shape than the prediction (mse)",
        lambda d: bp.mse().value(jnp.zeros((4, 1)), jnp.zeros((4,))), ValueError,
        r"mse: y_true has shape \(4,\) but y_pred has shape \(4, 1\)"),
    Row("a backward returning the wrong structure",
        lambda d: bp.backprop(bp.serial(_bad_structure_layer()), bp.mse())(
            bp.serial(_bad_structure_layer()).init(jax.random.key(0), (2,))[0],
            jnp.ones((4, 2)), jnp.ones((4, 3))),
        TypeError, r"the backward of layer 0 \(mine\) of serial\(mine\) returned dparams with "
                   r"structure"),
    # ---- every other layer: params, dtype and dy, checked at trace time ------------------
    Row("conv2d given the params of another conv2d (5 vs 4 channels)",
        lambda d: _forward(bp.conv2d(4, 3), (6, 6, 2), IMG, bp.conv2d(5, 3)), ValueError,
        r"conv2d\(4, 3\): params\.w has shape \(3, 3, 2, 5\), but this layer expects "
        r"\(3, 3, c_in, 4\)"),
    Row("integer images into conv2d",
        lambda d: _forward(bp.conv2d(4, 3), (6, 6, 2), IMG.astype(int)), TypeError,
        r"conv2d\(4, 3\): input x has dtype int\d+, but a floating-point array is expected"),
    Row("dy of the wrong shape into conv2d's backward",
        lambda d: _backward(bp.conv2d(4, 3, stride=2), (6, 6, 2), IMG, (2, 6, 6, 4)), ValueError,
        r"conv2d\(4, 3\): backward got dy of shape \(2, 6, 6, 4\), but forward's output y has "
        r"shape \(2, 3, 3, 4\)"),
    *_recurrent_rows("rnn", bp.rnn, "w_xh", 5),
    *_recurrent_rows("lstm", bp.lstm, "w_x", 20),
    Row("layer_norm params whose gamma and beta come from layers of other widths",
        lambda d: bp.layer_norm().forward(
            bp.LayerNormParams(jnp.ones(3), jnp.zeros(4)), SEQ), ValueError,
        r"layer_norm: params\.beta has shape \(4,\), but this layer expects \(3,\)"),
    Row("integer x into layer_norm",
        lambda d: _forward(bp.layer_norm(), (5, 3), SEQ.astype(int)), TypeError,
        r"layer_norm: input x has dtype int\d+, but a floating-point array"),
    Row("dy of the wrong shape into layer_norm's backward",
        lambda d: _backward(bp.layer_norm(), (5, 3), SEQ, (2, 3)), ValueError,
        r"layer_norm: backward got dy of shape \(2, 3\), but forward's output y has shape "
        r"\(2, 5, 3\)"),
    Row("embedding given the table of another vocabulary (12 vs 10 tokens)",
        lambda d: _forward(bp.embedding(10, 4), (5,), TOK, bp.embedding(12, 4)), ValueError,
        r"embedding\(10, 4\): params\.table has shape \(12, 4\), but this layer expects "
        r"\(10, 4\)"),
    Row("dy of the wrong shape into embedding's backward",
        lambda d: _backward(bp.embedding(10, 4), (5,), TOK, (2, 4)), ValueError,
        r"embedding\(10, 4\): backward got dy of shape \(2, 4\), but forward's output y has "
        r"shape \(2, 5, 4\)"),
    Row("multi_head_attention(4) given the params of a width-6 attention",
        lambda d: _forward(bp.multi_head_attention(4), (5, 6), jnp.ones((2, 5, 6)),
                           bp.multi_head_attention(3)), ValueError,
        r"multi_head_attention\(4\): params\.w_qkv has shape \(6, 18\), but 4 heads need "
        r"\(d, 3d\) with the width d divisible by 4"),
    Row("multi_head_attention params mixed from two widths",
        lambda d: bp.multi_head_attention(2).forward(
            _params(bp.multi_head_attention(2), (5, 4))._replace(
                w_o=jnp.ones((3, 3))), jnp.ones((2, 5, 4))), ValueError,
        r"multi_head_attention\(2\): params\.w_o has shape \(3, 3\), but this layer expects "
        r"\(4, 4\)"),
    Row("integer x into multi_head_attention",
        lambda d: _forward(bp.multi_head_attention(1), (5, 3), SEQ.astype(int)), TypeError,
        r"multi_head_attention\(1\): input x has dtype int\d+, but a floating-point array"),
    Row("dy of the wrong shape into multi_head_attention's backward",
        lambda d: _backward(bp.multi_head_attention(1), (5, 3), SEQ, (2, 3)), ValueError,
        r"multi_head_attention\(1\): backward got dy of shape \(2, 3\), but forward's output "
        r"y has shape \(2, 5, 3\)"),
    Row("integer x into a residual block",
        lambda d: _forward(bp.residual(bp.tanh()), (3,), jnp.ones((4, 3), int)), TypeError,
        r"residual\(tanh\): input x has dtype int\d+, but a floating-point array"),
    Row("dy of the wrong shape into a residual block's backward",
        lambda d: _backward(bp.residual(bp.tanh()), (3,), jnp.ones((4, 3)), (4, 1)), ValueError,
        r"residual\(tanh\): backward got dy of shape \(4, 1\), but forward's output y has "
        r"shape \(4, 3\)"),
    Row("dy of the wrong shape into max_pool's backward",
        lambda d: _backward(bp.max_pool(2), (6, 6, 2), IMG, (2, 6, 6, 2)), ValueError,
        r"max_pool\(2\): backward got dy of shape \(2, 6, 6, 2\), but forward's output y has "
        r"shape \(2, 3, 3, 2\)"),
    Row("dy of the wrong shape into avg_pool's backward",
        lambda d: _backward(bp.avg_pool(2), (6, 6, 2), IMG, (1, 3, 3, 2)), ValueError,
        r"avg_pool\(2\): backward got dy of shape \(1, 3, 3, 2\), but forward's output y has "
        r"shape \(2, 3, 3, 2\)"),
    Row("dy of the wrong shape into flatten's backward",
        lambda d: _backward(bp.flatten(), (6, 6, 2), IMG, (2, 36)), ValueError,
        r"flatten: backward got dy of shape \(2, 36\), but forward's output y has shape "
        r"\(2, 72\)"),
    Row("dy of the wrong shape into dropout's backward (evaluation mode)",
        lambda d: _backward(bp.dropout(0.5), (3,), jnp.ones((4, 3)), (4, 2)), ValueError,
        r"dropout\(0\.5\): backward got dy of shape \(4, 2\), but forward's output y has "
        r"shape \(4, 3\)"),
    Row("dy of the wrong shape into dropout's backward (training)",
        lambda d: _backward(bp.dropout(0.5), (3,), jnp.ones((4, 3)), (3,), jax.random.key(1)),
        ValueError, r"dropout\(0\.5\): backward got dy of shape \(3,\), but forward's output "
                    r"y has shape \(4, 3\)"),
    Row("dy of the wrong shape into last_step's backward",
        lambda d: _backward(bp.last_step(), (5, 3), SEQ, (2, 5, 3)), ValueError,
        r"last_step: backward got dy of shape \(2, 5, 3\), but forward's output y has shape "
        r"\(2, 3\)"),
    Row("dy of the wrong shape into softmax's backward",
        lambda d: _backward(bp.softmax(), (3,), jnp.ones((4, 3)), (4, 1)), ValueError,
        r"softmax: backward got dy of shape \(4, 1\), but forward's output y has shape "
        r"\(4, 3\)"),
    # ---- found by fuzzing (tests/test_fuzz.py) -----------------------------------------
    Row("a weighted loss given targets without weights",
        lambda d: bp.weighted(CE).value(jnp.zeros((4, 3)), jnp.zeros((4,), int)), TypeError,
        r"weighted\(softmax_cross_entropy\): y_true must be a pair \(y_true, w\)"),
    Row("integer labels passed as the prediction",
        lambda d: bp.binary_cross_entropy().value(jnp.zeros((4, 1), int), jnp.zeros((4, 1))),
        TypeError, r"binary_cross_entropy: y_pred has dtype int\d+, but the network's output"),
    Row("integer images into max_pool",
        lambda d: bp.max_pool(2).forward((), IMG.astype(int)), TypeError,
        r"max_pool\(2\): input x has dtype int\d+, but a floating-point array"),
    Row("an optimizer state made for another network",
        lambda d: bp.optim.adam(1e-3).update(PARAMS, bp.optim.adam(1e-3).init(OTHER)),
        ValueError, r"adam: the gradients have leaf shapes \[\(2, 8\), .* but the optimizer "
                    r"state's mu \(from init\) has \[\(2, 5\)"),
    Row("a checkpoint with a flipped zip flag (reads as encrypted)",
        lambda d: checkpoint.load(d / "c.npz", PARAMS), checkpoint.CheckpointDamaged,
        r"c\.npz' is damaged",
        lambda d: _flag_encrypted(checkpoint.save(d / "c.npz", PARAMS))),
    # ---- data values, checked once per data set ----------------------------------------
    Row("labels out of range", lambda d: _fit(y=_with(Y, 3, 7)), ValueError,
        r"fit: y holds class labels in \[0, 7\], but the network has 3 outputs"),
    Row("NaN in the inputs", lambda d: _fit(x=_with(X, (5, 1), np.nan)), ValueError,
        r"fit: x holds 1 non-finite value\(s\) \(nan or inf\), the first in row 5"),
    Row("inf in the validation targets",
        lambda d: fit(NET, bp.mse(), SGD, PARAMS, X, np.zeros((12, 3)), key=0, epochs=1,
                      validation=(X, _with(np.zeros((12, 3)), (2, 0), np.inf))),
        ValueError, r"fit validation: y holds 1 non-finite value\(s\)"),
    # ---- numbers and names --------------------------------------------------------------
    Row("a negative learning rate", lambda d: bp.optim.sgd(-0.1), ValueError,
        r"sgd: learning_rate=-0\.1 must be a number in \(0\.0, inf\)"),
    Row("a zero learning rate", lambda d: bp.optim.adam(0.0), ValueError,
        r"adam: learning_rate=0\.0 must be a number in \(0\.0, inf\)"),
    Row("a NaN learning rate", lambda d: bp.optim.momentum(float("nan")), ValueError,
        r"momentum: learning_rate=nan must be a number"),
    Row("batch_size <= 0", lambda d: _fit(batch_size=0), ValueError,
        r"fit: batch_size=0 must be an int >= 1"),
    Row("epochs < 0", lambda d: _fit(epochs=-1), ValueError, r"fit: epochs=-1 must be an int >= 0"),
    Row("epochs = 0 on a fresh run", lambda d: _fit(epochs=0), ValueError,
        r"fit: epochs=0 trains nothing on a fresh run"),
    Row("drop_prob >= 1", lambda d: bp.dropout(1.5), ValueError,
        r"dropout: drop_prob=1\.5 must be a probability in \[0, 1\)"),
    Row("drop_prob < 0", lambda d: bp.dropout(-0.1), ValueError,
        r"dropout: drop_prob=-0\.1 must be a probability in \[0, 1\)"),
    Row("an unknown activation name", lambda d: models.mlp((8,), 2, "swish"), ValueError,
        r"mlp: activation='swish' is not an activation"),
    Row("an unknown data set name", lambda d: data.load("mnist"), ValueError,
        r"load: name='mnist' is not a data set"),
    Row("an optimizer name instead of an optimizer", lambda d: _fit(optimizer="adam"),
        TypeError, r"fit: optimizer='adam' is not an optax GradientTransformation"),
    Row("an unknown gradient source", lambda d: bp.make_train_step(NET, CE, SGD, "numeric"),
        ValueError, r"make_train_step: grad='numeric' is not a gradient source"),
    Row("more devices than exist", lambda d: _fit(devices=99), ValueError,
        r"devices=99 but this process sees \d+ device"),
    # ---- layer state (batch norm's running statistics) -----------------------------------
    Row("a network with state in evaluation mode without its state",
        lambda d: BN_NET.forward(BN_PARAMS, X), ValueError,
        r"serial layer 1 \(batch_norm\): evaluation mode \(key=None\) normalises with the "
        r"running statistics"),
    Row("evaluate on a network with state without layer_state",
        lambda d: bp.evaluate(BN_NET, CE, BN_PARAMS, X, Y), ValueError,
        r"evaluate: .* has state .* layer_state was not given"),
    Row("a batch-norm state of another width",
        lambda d: bp.batch_norm().forward(BN_PARAMS[1], jnp.ones((4, 4)), state=_bn_state(3)),
        ValueError, r"batch_norm: state must be BatchNormState\(mean: \(4,\), var: \(4,\)\), "
                    r"got BatchNormState with shapes \[\(3,\), \(3,\)\]"),
    Row("a layer's own state where a network takes one entry per sublayer",
        lambda d: bp.serial(bp.dense(4), bp.batch_norm()).forward(
            BN_PARAMS[:2], X, state=bp.init_layer_state(BN_NET, BN_PARAMS)[1]), ValueError,
        r"state must be a tuple with one entry per sublayer \(2\), got a BatchNormState"),
    Row("a batch-norm state of another width, in training mode",
        lambda d: bp.batch_norm().forward(BN_PARAMS[1], jnp.ones((4, 4)), key=jax.random.key(0),
                                          state=_bn_state(1)),
        ValueError, r"batch_norm: state must be BatchNormState\(mean: \(4,\), var: \(4,\)\), "
                    r"got BatchNormState with shapes \[\(1,\), \(1,\)\]"),
    Row("a network's state with an entry missing (None where a layer has state)",
        lambda d: BN_NET.forward(BN_PARAMS, X, key=jax.random.key(0),
                                 state=(None, None, None, None)), ValueError,
        r"state entry 1 \(for batch_norm\) is None, but that layer has state"),
    Row("a network's state with an entry where a layer has none",
        lambda d: BN_NET.forward(BN_PARAMS, X, key=jax.random.key(0),
                                 state=(_bn_state(4), *bp.init_layer_state(BN_NET,
                                                                          BN_PARAMS)[1:])),
        ValueError, r"state entry 0 \(for dense\(4\)\) is a BatchNormState, but that layer "
                    r"has no state"),
    Row("a network's state as a list",
        lambda d: BN_NET.forward(BN_PARAMS, X, state=list(bp.init_layer_state(BN_NET,
                                                                              BN_PARAMS))),
        ValueError, r"state must be a tuple with one entry per sublayer \(4\), got a list"),
    Row("batch-norm momentum outside [0, 1)", lambda d: bp.batch_norm(momentum=1.0), ValueError,
        r"batch_norm: momentum=1\.0 must be a number in \[0\.0, 1\.0\)"),
    Row("a combinator of one's own that holds a layer with state but threads none",
        lambda d: bp.backprop(_stateless_wrapper(BN_NET), CE), TypeError,
        r"my_block holds serial\(.*batch_norm.*\), a layer with state .* declares no state "
        r"rule"),
    Row("fit: a batch larger than the data, for a network with state (full batches only)",
        lambda d: _fit(net=BN_NET, batch_size=16), ValueError,
        r"batch_size=16 exceeds the 12 training examples.*full batches only"),
    Row("sweep: a batch larger than the data, for a network with state",
        lambda d: bp.sweep(BN_NET, CE, bp.optim.sgd, X, Y, epochs=1, batch_size=16,
                           learning_rates=[0.1], progress=False), ValueError,
        r"sweep: batch_size=16 exceeds the 12 training examples.*full batches only"),
    # ---- files and runs -----------------------------------------------------------------
    Row("a checkpoint directory that cannot be written",
        lambda d: _fit(checkpoint_dir="/proc/jaxbp-run"), ValueError,
        r"fit: checkpoint_dir='/proc/jaxbp-run' cannot be written"),
    Row("a plot path that cannot be written",
        lambda d: plot.save_training_plot("/proc/s.png", {"train_loss": [1.0]}), ValueError,
        r"plot: path='/proc/s.png' cannot be written"),
    Row("a checkpoint of another architecture",
        lambda d: _fit(net=bp.serial(bp.dense(4), bp.tanh(), bp.dense(3)),
                       checkpoint_dir=d / "run", resume=True, epochs=3),
        checkpoint.CheckpointMismatch,
        r"leaf \['state'\]\.params\[0\]\.w has shape \(2, 8\) in the file but \(2, 4\)",
        lambda d: _saved_run(d / "run")),
    Row("every checkpoint of a run damaged", lambda d: _fit(checkpoint_dir=d / "run",
                                                            resume=True, epochs=3),
        checkpoint.CheckpointDamaged, r"fit: no valid checkpoint to resume in "
                                      r"checkpoint_dir=.*all 2 are damaged",
        lambda d: _saved_run(d / "run", damaged="all")),
    Row("load_run of a run with state without layer_state",
        lambda d: bp.train.load_run(d / "run", BN_PARAMS, SGD), checkpoint.CheckpointMismatch,
        r"load_run: .* is a run of a network with state .* layer_state was not given",
        lambda d: _fit(net=BN_NET, checkpoint_dir=d / "run")),
    Row("random bytes as a checkpoint", lambda d: checkpoint.load(d / "x.npz", PARAMS),
        checkpoint.CheckpointDamaged, r"is not a jaxbp checkpoint: it is not an \.npz",
        lambda d: (d / "x.npz").write_bytes(bytes(range(256)))),
    Row("training that diverges (loss or gradient non-finite)", _diverge, TrainingDiverged,
        r"fit: training diverged in epoch 1 at step \d of 5 \(step \d of the run\): the loss "
        r"went non-finite"),
    # ---- the command line: one line on stderr, exit 2 (usage) or 1 (failed run) ----------
    Row("jaxbp train: a learning rate far too large", ["train", "xor", "--lr", "1e6",
                                                        "--epochs", "50"], 1,
        r"training failed: the training loss rose from 0\.2\d+ .* to 0\.5; with --lr 1e\+06"),
    Row("jaxbp train: divergence to nan", ["train", "spirals", "--activation", "relu",
                                           "--optimizer", "sgd", "--lr", "1e300",
                                           "--epochs", "2"], 1,
        r"training diverged in epoch 1 at step \d+: .* went non-finite"),
    Row("jaxbp train: a plot path that cannot be written", ["train", "--plot", "/proc/s.png"],
        2, r"path='/proc/s.png' cannot be written: '/proc' does not accept new files"),
    Row("jaxbp train: a plot path not ending in .png", ["train", "--plot", "curves.jpg"], 2,
        r"path='curves.jpg' must end in .png"),
    Row("jaxbp train: --resume with another --hidden than the checkpoint's",
        ["train", "xor", "--epochs", "2", "--hidden", "4", "--checkpoint", "{dir}/ck",
         "--resume"], 2,
        r"was written by a run of another network or optimizer .* use the same --model, "
        r"--hidden and --optimizer .* or a new --checkpoint DIR", _cli_run),
    Row("jaxbp train: --resume when every checkpoint is damaged",
        ["train", "xor", "--epochs", "2", "--checkpoint", "{dir}/ck", "--resume"], 1,
        r"no valid checkpoint to resume in --checkpoint DIR/ck: all 1 are damaged",
        _truncate_all),
    Row("jaxbp train: a checkpoint directory that cannot be written",
        ["train", "--checkpoint", "/proc/ck"], 2, r"--checkpoint /proc/ck cannot be written"),
    Row("jaxbp train: a run directory without --resume",
        ["train", "xor", "--checkpoint", "{dir}/ck"], 2,
        r"already holds checkpoint_00000001\.npz; pass --resume", _cli_run),
    Row("jaxbp train: --resume without --checkpoint", ["train", "--resume"], 2,
        r"--resume needs --checkpoint DIR"),
    Row("jaxbp train: more --devices than exist", ["train", "--devices", "99"], 2,
        r"devices=99 but this process sees \d+ device"),
    Row("jaxbp train: a negative learning rate", ["train", "--lr", "-1"], 2,
        r"argument --lr: '-1' is not a positive learning rate"),
    Row("jaxbp train: --epochs 0", ["train", "--epochs", "0"], 2,
        r"argument --epochs: '0' is not a positive integer"),
    Row("jaxbp train: --batch-size 0", ["train", "--batch-size", "0"], 2,
        r"argument --batch-size: '0' is not a positive integer"),
    Row("jaxbp train: --dropout 1.5", ["train", "--dropout", "1.5"], 2,
        r"--dropout 1.5 must be a probability in \[0, 1\)"),
    Row("jaxbp train: an unknown activation", ["train", "--activation", "swish"], 2,
        r"argument --activation: invalid choice: 'swish'"),
    Row("jaxbp train: an unknown optimizer", ["train", "--optimizer", "adamax"], 2,
        r"argument --optimizer: invalid choice: 'adamax'"),
    Row("jaxbp train: an unknown optax optimizer", ["train", "--optax", "nosuch"], 2,
        r"--optax 'nosuch' is not an optax optimizer"),
    Row("jaxbp train: an unknown data set", ["train", "mnist"], 2,
        r"argument dataset: invalid choice: 'mnist'"),
    Row("jaxbp train: --model cnn on 2-D data", ["train", "spirals", "--model", "cnn"], 2,
        r"--model cnn works on image data, i.e. digits"),
    Row("jaxbp train: --model resnet on 2-D data", ["train", "spirals", "--model", "resnet"], 2,
        r"--model resnet works on image data, i.e. digits"),
]

_MESSAGES: dict[str, str] = {}  # row.what -> its message, as rendered in docs/errors.md


def _api(row: Row, directory: Path) -> str:
    with pytest.raises(row.error, match=row.match) as info:
        row.run(directory)
    return f"`{info.type.__name__}`: {info.value}"


def _cli(row: Row, directory: Path, capsys) -> str:
    capsys.readouterr()
    argv = [a.replace("{dir}", str(directory)) for a in row.run]
    try:
        status = main([*argv, "--no-progress"] if argv[0] == "train" else argv)
    except SystemExit as e:  # argparse's own usage errors
        status = e.code
    err = capsys.readouterr().err.replace(str(directory), "DIR")
    lines = [line for line in err.splitlines() if " warning: " not in line]
    assert status == row.error, err
    assert len(lines) == 1 and lines[0].startswith("jaxbp train: error: "), err
    assert re.search(row.match, lines[0]), lines[0]
    assert "Fix" in lines[0], lines[0]
    return f"exit {status}: {lines[0]}"


def _portable(text: str) -> str:
    """The message without what depends on the machine (the number and kind of devices)."""
    return re.sub(r"sees \d+ device\(s\) \((\w+)\); expected 1 <= devices <= \d+\. Fix: pass "
                  r"devices<=\d+", "sees N device(s) (cpu); expected 1 <= devices <= N. Fix: "
                  "pass devices<=N", text)


def message(row: Row, directory: Path, capsys) -> str:
    """Runs ``row`` (its setup first) in ``directory`` and returns its checked message."""
    if row.what not in _MESSAGES:
        directory.mkdir(parents=True, exist_ok=True)
        if row.setup is not None:
            row.setup(directory)
        got = _cli(row, directory, capsys) if isinstance(row.run, list) else _api(row, directory)
        _MESSAGES[row.what] = _portable(got.replace(str(directory), "DIR"))
    return _MESSAGES[row.what]


def _row_line(i: int, row: Row, text: str) -> str:
    """Row ``i`` (from 1) of the table in docs/errors.md, given its message ``text``."""
    return _row_prefix(i, row) + text.replace("|", "\\|") + " |"


def _row_prefix(i: int, row: Row) -> str:
    return f"| {i} | {row.what} | "


_OUT_OF_DATE = ("docs/errors.md is out of date; regenerate it with "
                "python tests/test_robust_errors.py")


@pytest.mark.parametrize("i, row", list(enumerate(ROWS, 1)), ids=[r.what for r in ROWS])
def test_bad_input_gives_a_clear_error(i, row, tmp_path, capsys):
    text = message(row, tmp_path, capsys)
    if not isinstance(row.run, list):  # API errors name the problem and the fix
        assert "Fix" in text or row.error is TrainingDiverged or "damaged" in text, text
    line = _row_line(i, row, text)
    assert f"\n{line}\n" in DOC.read_text(), f"{_OUT_OF_DATE}: row {i} should read\n{line}"


def _stated_messages(doc: str) -> dict[str, str]:
    """row.what -> its message as the table of ``doc`` states it (``|`` unescaped); fails
    naming the first row the table lacks or has out of place."""
    stated, start = {}, 0
    ends = [f"\n{_row_prefix(i, row)}" for i, row in enumerate(ROWS[1:], 2)]
    ends.append("\n\nNot errors, by design:")
    for i, (row, end) in enumerate(zip(ROWS, ends), 1):
        prefix = f"\n{_row_prefix(i, row)}"
        begin = doc.find(prefix, start)
        assert begin >= 0, f"{_OUT_OF_DATE}: row {i} ({row.what}) missing or out of order"
        start = doc.find(end, begin + len(prefix))
        assert start >= 0, (f"{_OUT_OF_DATE}: after row {i} ({row.what}), no "
                            f"{'row ' + str(i + 1) if i < len(ROWS) else 'end of table'}")
        text = doc[begin + len(prefix):start]
        assert text.endswith(" |"), f"{_OUT_OF_DATE}: row {i} ({row.what}) malformed"
        stated[row.what] = text[:-2].replace("\\|", "|")
    return stated


def render(messages: dict[str, str] | None = None) -> str:
    """docs/errors.md from the messages of :data:`ROWS` (``messages``: row.what -> message;
    by default the ones the rows produced in this process)."""
    messages = _MESSAGES if messages is None else messages
    lines = ["# Errors: every bad input and its message", "",
             "Generated from `tests/test_robust_errors.py` (the table of bad inputs the tests "
             "check); regenerate with `python tests/test_robust_errors.py` after changing a "
             "message. Paths of scratch directories read `DIR`. Shape and dtype checks run in "
             "Python at trace time (no cost per step under `jit`); data values are checked once "
             "per data set in `fit`; the command line prints one line on stderr and exits 2 for "
             "a usage mistake, 1 for a run that failed (`--debug` shows the traceback).", "",
             "| # | bad input | error and message |", "|---|---|---|"]
    lines += [_row_line(i, row, messages[row.what]) for i, row in enumerate(ROWS, 1)]
    lines += ["", "Not errors, by design:", "",
              "- `batch_size` larger than the data set: one batch per epoch holding every "
              "example, padded to `batch_size` with rows of weight zero, so the step is exact "
              "full-batch gradient descent (at the cost of computing the padding).",
              "- `epochs` no more than `state.epoch` (or a resumed run's): nothing more is "
              "trained, and the state is returned as it is.",
              "- `jaxbp train --resume` with no checkpoint in `--checkpoint DIR` yet: it says "
              "so and starts afresh.",
              "- a damaged newest checkpoint beside an older valid one: resuming warns, naming "
              "the damaged file, and continues from the newest valid one.",
              "- bfloat16 params with float32 `x`: both gradient sources compute in the "
              "promoted dtype and return each gradient in its parameter's dtype.", ""]
    return "\n".join(lines)


def test_errors_doc_is_current(tmp_path_factory, capsys):
    """The page is what :func:`render` makes of the messages its table states; that each
    stated message is the one its row produces, each row's test checks (rows run once)."""
    assert len(ROWS) >= 30
    assert len({row.what for row in ROWS}) == len(ROWS), "two rows of the same name"
    if os.environ.get("JAXBP_WRITE_ERRORS_DOC"):
        for i, row in enumerate(ROWS):
            message(row, tmp_path_factory.mktemp(f"row{i}"), capsys)
        DOC.write_text(render())
    doc = DOC.read_text()
    assert doc == render(_stated_messages(doc)), _OUT_OF_DATE


if __name__ == "__main__":  # regenerate docs/errors.md (the tests' configuration: conftest.py)
    os.environ["JAXBP_WRITE_ERRORS_DOC"] = "1"
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", f"{__file__}::"
                          "test_errors_doc_is_current"]))
