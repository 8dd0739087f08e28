"""The built-in layers and losses, one line each: the table that ``jaxbp check``, the tests and
the docs read.

A :class:`LayerCase` says how to build a layer and draw its inputs, a :class:`LossCase` the
same for a loss. Adding a layer or loss is one line in :data:`LAYER_CASES` or
:data:`LOSS_CASES`; :func:`check_case` checks one case (``jaxbp check`` checks them all, and
``tests/test_layers.py`` compares every layer that accepts any shape with ``jax.vjp``).

Examples:
  >>> from jaxbp import cases
  >>> relu = next(c for c in cases.LAYER_CASES if c.name == "relu")
  >>> cases.check_case(relu, draws=1).ok
  True
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp._core import Layer, Loss, init_layer_state, serial, update_layer_state
from jaxbp.check.report import GradientReport
from jaxbp.check.verdicts import LeafCheck, Status
from jaxbp.check import check_layer, check_loss
from jaxbp.layers import position_embedding
from jaxbp.losses import token_cross_entropy
from jaxbp.models import residual_block, transformer
from jaxbp.layers import add, branches, concat, fan_out
from jaxbp.layers import (avg_pool, batch_norm, conv2d, dense, dropout, elu, embedding, flatten,
                          gelu, identity, last_step, layer_norm, leaky_relu, lstm, max_pool,
                          multi_head_attention, relu, residual, rnn, sigmoid, softmax, softplus,
                          tanh)
from jaxbp.losses import (binary_cross_entropy, mse, sigmoid_binary_cross_entropy,
                          softmax_cross_entropy)

#: How a case draws its inputs: ``draw(rng, shape) -> array`` of that shape (batch axis included).
Draw = Callable[[np.random.Generator, tuple], np.ndarray]


def normal(rng: np.random.Generator, shape) -> np.ndarray:
    """Standard normal values."""
    return rng.standard_normal(shape)


def with_zeros(rng: np.random.Generator, shape) -> np.ndarray:
    """Standard normal with about a third of the values exactly 0 (on ReLU-type kinks)."""
    x = rng.standard_normal(shape)
    return np.where(rng.uniform(size=shape) < 1 / 3, 0.0, x)


def ties(rng: np.random.Generator, shape) -> np.ndarray:
    """Integers in ``{-1, 0, 1}`` as floats: many exact ties (max pooling) and zeros."""
    return rng.integers(-1, 2, shape).astype(np.float64)


def tokens(vocab: int) -> Draw:
    """Integer token ids in ``[0, vocab)``."""
    return lambda rng, shape: rng.integers(0, vocab, shape).astype(np.int32)


def probabilities(rng: np.random.Generator, shape) -> np.ndarray:
    """Probabilities in ``[0.05, 0.95]``: off the clip that keeps ``log`` finite."""
    return rng.uniform(0.05, 0.95, shape)


def binary(rng: np.random.Generator, shape) -> np.ndarray:
    """Targets in ``{0, 1}``."""
    return rng.integers(0, 2, shape).astype(np.float64)


def labels(rng: np.random.Generator, shape) -> np.ndarray:
    """Integer class labels ``(batch,)`` for logits of shape ``(batch, classes)``."""
    return rng.integers(0, shape[-1], shape[:1]).astype(np.int32)


def one_hot(rng: np.random.Generator, shape) -> np.ndarray:
    """One-hot targets of shape ``(batch, classes)``."""
    return np.eye(shape[-1])[rng.integers(0, shape[-1], shape[0])]


def token_targets(rng: np.random.Generator, shape) -> np.ndarray:
    """Integer targets ``(batch, T)`` in ``[-1, vocab)`` for logits ``(batch, T, vocab)``; -1
    (about one position in five) has no target."""
    t = rng.integers(0, shape[-1], shape[:2])
    return np.where(rng.uniform(size=shape[:2]) < 0.2, -1, t).astype(np.int32)


def token_one_hot(rng: np.random.Generator, shape) -> np.ndarray:
    """One-hot targets ``(batch, T, vocab)`` with about one position in five all zero."""
    labels = token_targets(rng, shape)
    return np.where(labels[..., None] >= 0, np.eye(shape[-1])[np.maximum(labels, 0)], 0.0)


class LayerCase(NamedTuple):
    """One built-in layer: how to build it and draw its inputs.

    Attributes:
      name: the case's id (``jaxbp check --only NAME``, pytest ids).
      make: ``() -> Layer``.
      input_shape: one example's shape, without the batch axis.
      draw: ``(rng, shape) -> x``, the inputs ``jaxbp check`` uses (``shape`` includes the
        batch axis): :func:`normal`, :func:`with_zeros` or :func:`ties` to put inputs exactly on
        a kink, :func:`tokens` for integer inputs.
      training: run the forward with a fixed key (dropout's mask).
      kink_margin: the random-shape tests compare with ``jax.vjp`` off the kinks, on standard
        normal inputs kept ``|x| >= kink_margin`` (integer draws are used as they are).
      any_shape: the layer accepts every shape of its rank (sizes 1 to 5 are drawn); False for
        one that needs ``input_shape`` (VALID convolution, explicit pads, a CNN).
      state_update: for a layer with state, the reference of its update, ``(state, x) -> the
        state after a training forward on x`` (NumPy, written from the definition):
        :func:`check_case` compares the layer's own update with it.
    """

    name: str
    make: Callable[[], Layer]
    input_shape: tuple
    draw: Draw = normal
    training: bool = False
    kink_margin: float = 0.0
    any_shape: bool = True
    state_update: Callable | None = None


class LossCase(NamedTuple):
    """One built-in loss: ``LossCase(name, make, pred_shape, draw_pred, draw_true)``, where
    ``draw_pred(rng, shape)`` draws predictions of ``(batch, *pred_shape)`` and
    ``draw_true(rng, y_pred_shape)`` their targets."""

    name: str
    make: Callable[[], Loss]
    pred_shape: tuple
    draw_pred: Draw = normal
    draw_true: Draw = normal


_OFF_ZERO = 0.05  # keeps random inputs off the kink at 0 of ReLU-type layers


def running_statistics(momentum: float) -> Callable:
    """Batch norm's state update from its definition: ``running = momentum · running +
    (1 − momentum) · batch``, with the batch's mean and biased variance over every axis but
    the last."""
    def update(state, x):
        x = np.asarray(x, np.float64).reshape(-1, np.shape(x)[-1])
        mean, var = x.mean(axis=0), x.var(axis=0)
        return type(state)(momentum * np.asarray(state.mean) + (1 - momentum) * mean,
                           momentum * np.asarray(state.var) + (1 - momentum) * var)

    return update

#: Every built-in layer, one :class:`LayerCase` each: what ``jaxbp check``, ``tests/test_layers.py``
#: and ``tests/test_check_cli.py`` check. A new layer is one line here.
LAYER_CASES: list[LayerCase] = [
    LayerCase("dense", lambda: dense(4), (3,)),
    LayerCase("dense_he", lambda: dense(5, w_init="he_normal"), (3,)),
    LayerCase("dense_rank3", lambda: dense(2), (2, 3)),
    LayerCase("identity", identity, (4,)),
    LayerCase("sigmoid", sigmoid, (4,)),
    LayerCase("tanh", tanh, (4,)),
    LayerCase("relu", relu, (5,), with_zeros, kink_margin=_OFF_ZERO),
    LayerCase("leaky_relu", lambda: leaky_relu(0.1), (5,), with_zeros, kink_margin=_OFF_ZERO),
    LayerCase("elu", lambda: elu(0.5), (5,), with_zeros, kink_margin=_OFF_ZERO),
    LayerCase("softplus", softplus, (4,)),
    LayerCase("gelu_tanh", lambda: gelu(approximate=True), (4,)),
    LayerCase("gelu_erf", lambda: gelu(approximate=False), (4,)),
    LayerCase("softmax", softmax, (4,)),
    LayerCase("mlp", lambda: serial(dense(5), relu(), dense(3), tanh()), (4,), with_zeros),
    LayerCase("serial_mlp", lambda: serial(dense(4), tanh(), dense(2), sigmoid()), (4,)),
    LayerCase("conv2d_same_s2", lambda: conv2d(3, 3, stride=2), (5, 5, 2)),
    LayerCase("conv2d_valid", lambda: conv2d(2, 2, padding="VALID"), (4, 4, 1), any_shape=False),
    LayerCase("max_pool_ties", lambda: max_pool(3, stride=2, padding="SAME"), (5, 5, 2), ties),
    LayerCase("avg_pool", lambda: avg_pool(3, stride=2, padding="SAME"), (5, 5, 2)),
    LayerCase("flatten", flatten, (3, 3, 2)),
    LayerCase("dropout", lambda: dropout(0.3), (2, 6), training=True),
    LayerCase("layer_norm", layer_norm, (2, 5)),
    LayerCase("rnn", lambda: rnn(4), (3, 2)),
    LayerCase("lstm", lambda: lstm(3), (3, 2)),
    LayerCase("last_step", last_step, (3, 2)),
    LayerCase("embedding", lambda: embedding(6, 3), (4,), tokens(6)),
    LayerCase("cnn", lambda: serial(conv2d(2, 3), relu(), max_pool(2), flatten(), dense(3)),
              (4, 4, 1), with_zeros, any_shape=False),
    LayerCase("conv2d_explicit_pads", lambda: conv2d(2, (3, 2), stride=(2, 3),
                                                     padding=((2, 1), (0, 1))), (5, 6, 1),
              any_shape=False),
    LayerCase("sequence_model", lambda: serial(embedding(5, 3), lstm(4), last_step(), dense(2)),
              (4,), tokens(5)),
    LayerCase("attention", lambda: multi_head_attention(2), (3, 4), any_shape=False),
    LayerCase("attention_causal", lambda: multi_head_attention(2, causal=True), (5, 4),
              any_shape=False),
    LayerCase("residual", lambda: residual(serial(layer_norm(), tanh())), (2, 5)),
    LayerCase("transformer_block", lambda: serial(
        residual(serial(layer_norm(), multi_head_attention(2, causal=True))),
        residual(serial(layer_norm(), dense(8), gelu(), dense(4)))), (3, 4), any_shape=False),
    LayerCase("position_embedding", lambda: position_embedding(6), (3, 4)),
    LayerCase("transformer", lambda: transformer(7, 5, d_model=4, num_heads=2,
                                                 num_blocks=1).net, (4,), tokens(7),
              any_shape=False),
    LayerCase("branches_add", lambda: serial(fan_out(2), branches(dense(4), serial(
        dense(4), relu())), add()), (3,), with_zeros, kink_margin=_OFF_ZERO),
    LayerCase("branches_concat", lambda: serial(fan_out(2), branches(dense(2), tanh()),
                                                concat()), (2, 3), any_shape=False),
    # (batch, time, features): at least two rows per batch, even at batch 1 (in float32 two
    # rows leave dx = 0 up to cancellation, as the two normalised values are ±1)
    LayerCase("batch_norm", lambda: batch_norm(momentum=0.8), (2, 3), training=True,
              state_update=running_statistics(0.8)),
    LayerCase("batch_norm_nhwc", lambda: batch_norm(), (3, 3, 2), training=True,
              state_update=running_statistics(0.9)),
    LayerCase("resnet_block", lambda: serial(conv2d(2, 3), batch_norm(), relu(),
                                             residual_block(2)), (4, 4, 1), with_zeros,
              training=True, kink_margin=_OFF_ZERO, any_shape=False),
]

#: Every built-in loss, one :class:`LossCase` each (with targets of each kind it accepts).
LOSS_CASES: list[LossCase] = [
    LossCase("mse", mse, (3,)),
    LossCase("binary_cross_entropy", binary_cross_entropy, (3,), probabilities, binary),
    LossCase("bce_soft_targets", binary_cross_entropy, (3,), probabilities, probabilities),
    LossCase("sigmoid_binary_cross_entropy", sigmoid_binary_cross_entropy, (3,),
             draw_true=binary),
    LossCase("softmax_cross_entropy_labels", softmax_cross_entropy, (4,), draw_true=labels),
    LossCase("softmax_cross_entropy_one_hot", softmax_cross_entropy, (4,), draw_true=one_hot),
    LossCase("token_cross_entropy_labels", token_cross_entropy, (3, 4), draw_true=token_targets),
    LossCase("token_cross_entropy_one_hot", token_cross_entropy, (3, 4),
             draw_true=token_one_hot),
]


def check_case(case: LayerCase | LossCase, *, key=0, draws: int = 2) -> GradientReport:
    """Checks one case with :func:`~jaxbp.check_layer` or :func:`~jaxbp.check_loss` (batch
    sizes 1 and 3, ``draws`` draws each, inputs from the case's draw functions)."""
    if isinstance(case, LayerCase):
        report = check_layer(case.make(), case.input_shape, key=key, draws=draws,
                             input_fn=case.draw, training=case.training)
        if case.state_update is None:
            return report
        return dataclasses.replace(report, rows=report.rows + _state_rows(case, key))
    if isinstance(case, LossCase):
        return check_loss(case.make(), case.pred_shape, key=key, draws=draws,
                          pred_fn=case.draw_pred, target_fn=case.draw_true)
    raise TypeError(f"check_case: case must be a LayerCase or a LossCase, got "
                    f"{type(case).__name__}. Fix: e.g. LayerCase('relu', bp.relu, (5,)).")


_STATE_TRAINED = ("the layer's state after a training forward equals the reference update "
                 "(momentum · running + (1 − momentum) · batch)")
_STATE_WRONG = "the layer's state update differs from the reference → the update is wrong"
_STATE_KEPT = "evaluation mode left the state unchanged"
_STATE_MOVED = "evaluation mode changed the state → only training may move it"


def _state_rows(case: LayerCase, key) -> tuple[LeafCheck, ...]:
    """Rows checking a layer's state update at a random state and input (float64): after a
    training forward against ``case.state_update``, after an evaluation forward unchanged."""
    seed = key if isinstance(key, int) else 0
    rng = np.random.default_rng(seed)
    layer = case.make()
    with jax.enable_x64(True):
        x = jnp.asarray(case.draw(rng, (5, *case.input_shape)), jnp.float64)
        params = layer.init(jax.random.key(seed), case.input_shape)[0]
        start = jax.tree_util.tree_map(
            lambda a: jnp.asarray(rng.uniform(0.5, 2.0, np.shape(a))), init_layer_state(layer,
                                                                                  params))
        trained = update_layer_state(layer, start, layer.forward(
            params, x, key=jax.random.key(seed))[1])
        kept = update_layer_state(layer, start, layer.forward(params, x, state=start)[1])
        reference = case.state_update
        assert reference is not None, "only for a case with a reference update"
        checks = ((trained, reference(start, x), _STATE_TRAINED, _STATE_WRONG),
                  (kept, start, _STATE_KEPT, _STATE_MOVED))
        rows = []
        for got, want, right, wrong in checks:
            for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(got),
                                    jax.tree_util.tree_leaves(want)):
                g, w = np.asarray(g), np.asarray(w)
                err = float(np.max(np.abs(g - w), initial=0.0))
                rel = err / max(1.0, float(np.max(np.abs(w), initial=0.0)))
                ok = np.shape(g) == np.shape(w) and rel <= 1e-12
                rows.append(LeafCheck(f"state{jax.tree_util.keystr(path)}", tuple(np.shape(g)),
                                      Status.OK if ok else Status.FAIL, right if ok else wrong,
                                      err, rel))
    return tuple(rows)


__all__ = ["LAYER_CASES", "LOSS_CASES", "Draw", "LayerCase", "LossCase", "binary",
           "check_case", "labels", "normal", "one_hot", "probabilities", "running_statistics",
           "ties", "token_one_hot", "token_targets", "tokens", "with_zeros"]
